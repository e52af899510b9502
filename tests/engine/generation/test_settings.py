"""Engine settings from the environment, their mapping onto vLLM's arguments
(no engine is started)."""

from __future__ import annotations

import pytest

from engine.generation.runtime import engine_kwargs
from engine.generation.settings import EngineSettings


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGINE_MODEL", str(tmp_path))
    monkeypatch.setenv("ENGINE_MAX_MODEL_LEN", "2048")
    monkeypatch.setenv("ENGINE_CPU_KV_CACHE_BYTES", str(256 << 20))
    monkeypatch.setenv("ENGINE_SERVED_MODEL_NAME", "")  # empty means unset
    settings = EngineSettings()
    assert settings.model == str(tmp_path)
    assert settings.model_id == str(tmp_path)
    assert settings.max_model_len == 2048
    monkeypatch.setenv("ENGINE_SERVED_MODEL_NAME", "meta-llama/Llama-3.1-8B-Instruct")
    assert EngineSettings().model_id == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(
    ("name", "value"),
    [("ENGINE_MAX_MODEL_LEN", "0"), ("ENGINE_GPU_MEMORY_UTILIZATION", "1.5")],
)
def test_settings_refuse_bad_values(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        EngineSettings()


def test_cpu_engine_arguments():
    """On this CPU build: float32, a bounded KV cache, no torch.compile (minutes of start-up)."""
    kwargs = engine_kwargs(EngineSettings(model="/models/x", cpu_kv_cache_bytes=123 << 20))
    assert kwargs["dtype"] == "float32"
    assert kwargs["kv_cache_memory_bytes"] == 123 << 20
    assert kwargs["enforce_eager"] is True
    assert kwargs["served_model_name"] == "/models/x"
    explicit = engine_kwargs(EngineSettings(model="/m", dtype="bfloat16", enforce_eager=False))
    assert (explicit["dtype"], explicit["enforce_eager"]) == ("bfloat16", False)

"""Engine settings from the environment, their mapping onto vLLM's arguments, and the
committed OpenAPI schema (no engine is started: the app's lifespan is not entered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.generation.app import create_app
from engine.generation.runtime import engine_kwargs
from engine.generation.settings import EngineSettings

SCHEMA = Path(__file__).resolve().parents[2] / "engine" / "generation" / "openapi.json"


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


def test_openapi_schema_is_committed():
    """The committed schema is what the code renders (regenerate: python -m
    tests.engine.test_settings_and_schema)."""
    rendered = create_app(EngineSettings(model="/models/x")).openapi()
    assert json.loads(SCHEMA.read_text()) == rendered


if __name__ == "__main__":
    schema = create_app(EngineSettings(model="/models/x")).openapi()
    SCHEMA.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA}")

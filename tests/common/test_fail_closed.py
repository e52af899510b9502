"""Service auth fails closed (issue 20, finding 6): an empty token is an error, never "unset",
and where PLAYGROUND_DEPLOYED is set (modal_deploy.py sets it) the engine, the SAE service and
the backend refuse to start without one (the backend also without PUBLIC_BASE_URL)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from backend.settings import Settings as BackendSettings
from engine.generation.settings import EngineSettings
from engine.sae.settings import Settings as SaeSettings
from tests.support.servers import REPO_ROOT


def sae_settings() -> SaeSettings:
    return SaeSettings(model="/models/m", sae_dirs=["/saes/s"])


SERVICES = [
    (EngineSettings, "ENGINE_API_TOKEN"),
    (sae_settings, "SAE_SERVICE_API_TOKEN"),
    (BackendSettings, "PLAYGROUND_SERVICE_TOKEN"),
]


@pytest.mark.parametrize(("settings", "variable"), SERVICES)
@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_token_is_an_error(monkeypatch, settings, variable, empty):
    monkeypatch.delenv("PLAYGROUND_DEPLOYED", raising=False)
    monkeypatch.setenv(variable, empty)
    with pytest.raises(ValidationError, match=f"{variable} is set but empty"):
        settings()


@pytest.mark.parametrize(("settings", "variable"), SERVICES)
def test_deployed_needs_a_token(monkeypatch, settings, variable):
    monkeypatch.setenv("PLAYGROUND_DEPLOYED", "1")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://playground.example")
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValidationError, match=f"{variable} is required"):
        settings()
    monkeypatch.setenv(variable, "a-token")
    assert settings() is not None


def test_local_without_a_token_still_starts(monkeypatch):
    for _, variable in SERVICES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("PLAYGROUND_DEPLOYED", raising=False)
    assert EngineSettings().api_token is None and sae_settings().api_token is None


def test_deployed_backend_needs_public_base_url(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_DEPLOYED", "1")
    monkeypatch.setenv("PLAYGROUND_SERVICE_TOKEN", "a-token")
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    with pytest.raises(ValidationError, match="PUBLIC_BASE_URL is required"):
        BackendSettings()


def test_the_engine_process_refuses_to_start(tmp_path):
    """`playground engine` with an empty token exits with the reason, before any model load."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "ENGINE_API_TOKEN": ""}
    done = subprocess.run(
        [sys.executable, "-m", "playground.cli", "engine", "--model", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode != 0
    assert "ENGINE_API_TOKEN is set but empty" in done.stderr

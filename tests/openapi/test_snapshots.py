"""The committed OpenAPI schema of each service is what its code renders, so a wire change is
always a deliberate diff. Apps are built without entering their lifespans (no database, model or
engine is needed to render a schema).

After an intended API change: ``UPDATE_OPENAPI=1 .venv/bin/pytest tests/openapi``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SNAPSHOTS = Path(__file__).resolve().parent


def _backend() -> dict[str, Any]:
    from backend.app import create_app
    from backend.settings import Settings

    return create_app(Settings(database_url="postgresql://unused/none")).openapi()


def _engine() -> dict[str, Any]:
    from engine.generation.app import create_app
    from engine.generation.settings import EngineSettings

    return create_app(EngineSettings(model="/models/x")).openapi()


def _sae() -> dict[str, Any]:
    from engine.sae.app import create_app
    from engine.sae.settings import Settings

    return create_app(Settings(model="unused", sae_dirs=[Path("unused")])).openapi()


RENDERERS: dict[str, Callable[[], dict[str, Any]]] = {
    "backend": _backend,
    "engine": _engine,
    "sae": _sae,
}

CONTRACT_PATHS = {
    "backend": {
        "/playground/activations/run",
        "/playground/activations/runs",
        "/playground/activations/summary",
        "/playground/activations/health",
        "/playground/activations/{request_id}",
        "/playground/activations/{request_id}/rows",
        "/playground/activations/{request_id}/top-features",
        "/playground/activations/{request_id}/feature-deltas",
        "/playground/features/extract",
        "/playground/features/analyze",
        "/playground/features/saes",
        "/playground/features/search",
        "/playground/features/{sae_id}/{layer}/labels",
        "/playground/features/{sae_id}/{layer}/{feature_id}",
        "/playground/chat/completions",
    },
    "engine": {"/generate", "/generate/batch", "/tokenize", "/health"},
    "sae": {
        "/extract_features",
        "/analyze_features",
        "/saes",
        "/health",
        "/features/{sae_id}/{layer}/{feature_id}",
        "/saes/{sae_id}/{layer}/labels",
    },
}


@pytest.mark.parametrize("service", sorted(RENDERERS))
def test_committed_schema_is_current(service: str) -> None:
    snapshot = SNAPSHOTS / f"{service}.json"
    schema = RENDERERS[service]()
    if os.environ.get("UPDATE_OPENAPI") == "1":
        snapshot.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert snapshot.exists(), "run with UPDATE_OPENAPI=1 to create the snapshot"
    assert json.loads(snapshot.read_text()) == schema, (
        f"the {service} API schema changed: review, then UPDATE_OPENAPI=1 to accept it"
    )
    assert CONTRACT_PATHS[service] <= set(schema["paths"])


def test_validation_errors_are_declared() -> None:
    paths = RENDERERS["sae"]()["paths"]
    assert "422" in paths["/extract_features"]["post"]["responses"]

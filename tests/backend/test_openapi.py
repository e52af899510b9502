"""The committed OpenAPI schema (tests/backend/openapi.json) matches what the code renders.

After an intended API change: `UPDATE_OPENAPI=1 .venv/bin/pytest tests/backend/test_openapi.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from backend.app import create_app
from backend.settings import Settings

SNAPSHOT = Path(__file__).with_name("openapi.json")


def test_openapi_matches_snapshot():
    # The lifespan (and so the database) is not needed to render the schema.
    schema = create_app(Settings(database_url="postgresql://unused/none")).openapi()
    rendered = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_OPENAPI") == "1":
        SNAPSHOT.write_text(rendered)
    assert SNAPSHOT.exists(), "run with UPDATE_OPENAPI=1 to create the snapshot"
    assert rendered == SNAPSHOT.read_text(), (
        "the API schema changed: review, then UPDATE_OPENAPI=1 to accept it"
    )
    paths = set(schema["paths"])
    assert {
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
        "/playground/chat/completions",
    } <= paths

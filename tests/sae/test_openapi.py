"""The committed OpenAPI schema of the SAE service is what the code renders (a wire change
must be a deliberate diff). Regenerate: ``.venv/bin/python -m tests.sae.test_openapi``."""

from __future__ import annotations

import json
from pathlib import Path

from engine.sae.app import create_app
from engine.sae.settings import Settings

SCHEMA = Path(__file__).with_name("openapi.json")


def render() -> dict:
    # The schema needs no model: the lifespan (which loads it) does not run here.
    return create_app(Settings(model="unused", sae_dirs=[Path("unused")])).openapi()


def test_committed_openapi_schema_is_current():
    assert json.loads(SCHEMA.read_text()) == render()


def test_schema_has_the_contract_paths():
    paths = render()["paths"]
    assert {"/extract_features", "/analyze_features", "/saes", "/health"} <= set(paths)
    assert "422" in paths["/extract_features"]["post"]["responses"]


if __name__ == "__main__":
    SCHEMA.write_text(json.dumps(render(), indent=2, sort_keys=True) + "\n")

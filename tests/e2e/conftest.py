"""The end-to-end tests' backend: the real app on the session's engine and SAE service, over a
fresh migrated database of each module's own. A module that needs the backend configured
otherwise has a fixture of its own, named for what differs."""

from __future__ import annotations

import pytest

from backend.app import create_app
from backend.settings import Settings
from tests.support.databases import create_database
from tests.support.servers import SERVICE_TOKEN, serve_app


def e2e_settings(
    database_url: str, engine_url: str, sae_url: str, model_dir, **overrides
) -> Settings:
    """The backend's settings for the session's real services (demo_random SAE at layer 16)."""
    values = {
        "database_url": database_url,
        "playground_activations_hf_url": engine_url,
        "playground_sae_url": sae_url,
        "playground_default_model_id": str(model_dir),
        "playground_default_sae_id": "demo_random",
        "playground_default_sae_layer": 16,
        "playground_service_token": SERVICE_TOKEN,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def database_url(pg_uri) -> str:
    return create_database(pg_uri, prefix="e2e", migrate=True)


@pytest.fixture(scope="module")
def backend_url(database_url, engine_url, sae_url, tiny_model_dir):
    with serve_app(
        create_app(e2e_settings(database_url, engine_url, sae_url, tiny_model_dir))
    ) as url:
        yield url

"""Browser test parts: the real stack (session engine and SAE service, a fresh migrated database,
the backend served over HTTP); headless Chromium (`browser`, `page`) is tests/support/browser.py."""

from __future__ import annotations

import pytest

from backend.app import create_app
from backend.settings import Settings
from tests.support.databases import create_database
from tests.support.servers import SERVICE_TOKEN, free_port, serve_app


@pytest.fixture(scope="module")
def page_db(pg_uri) -> str:
    """A fresh database, migrated. Sync on purpose: Playwright's sync API keeps an event loop
    running in this thread, so asyncio work goes to a thread of its own."""
    uri = create_database(pg_uri, prefix="page", migrate=True)
    return uri


def settings_for(db: str, engine_url: str, sae_url: str) -> Settings:
    return Settings(
        database_url=db,
        playground_activations_hf_url=engine_url,
        playground_sae_url=sae_url,
        playground_default_sae_id="demo_random",
        playground_default_sae_layer=16,
        playground_service_token=SERVICE_TOKEN,
        # One browser runs every test: the per-client GPU limits are for strangers.
        playground_rate_gpu_per_window=10_000,
        playground_gpu_in_flight_per_client=100,
    )


@pytest.fixture(scope="module")
def backend_url(page_db, engine_url, sae_url):
    with serve_app(create_app(settings_for(page_db, engine_url, sae_url))) as url:
        yield url


@pytest.fixture(scope="module")
def engineless_backend_url(page_db, sae_url):
    """The same backend, its engine URL pointing at a port nothing listens on."""
    with serve_app(
        create_app(settings_for(page_db, f"http://127.0.0.1:{free_port()}", sae_url))
    ) as url:
        yield url

"""Browser test parts: the real stack (session engine and SAE service, a fresh migrated database,
the backend served over HTTP) and headless Chromium driven by Playwright."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.app import create_app
from backend.settings import Settings
from tests.support.databases import create_database
from tests.support.servers import SERVICE_TOKEN, free_port, serve_app

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed here: without the background-networking flags Chromium floods it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}


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


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (./dev test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test; console errors and page errors are collected."""
    # CSP bypassed: Playwright's wait_for_function evaluates strings, which the page's CSP
    # forbids; it also makes the HTML-prompt test check the page's rendering on its own.
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch_problems(page)
    yield page
    context.close()


def watch_problems(page) -> None:
    """Collect on ``page.problems`` the page's uncaught errors and its console errors (what a
    user's console would show in red; Chromium also logs a failed fetch there, with its URL
    and status). A test that provokes one on purpose (a 4xx it expects) drops that one entry
    by a precise pattern, with its reason, never by clearing the list."""
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))

    def console(message) -> None:
        if message.type == "error":
            where = message.location or {}
            page.problems.append(f"console error: {message.text} ({where.get('url', '?')})")

    page.on("console", console)


def drop_provoked(page, pattern: str) -> None:
    """Take off ``page.problems`` the one entry a test provoked on purpose (``pattern``, a
    regular expression searched in it): it must be there exactly once, and nothing else goes."""
    matching = [p for p in page.problems if re.search(pattern, p)]
    assert len(matching) == 1, (pattern, page.problems)
    page.problems.remove(matching[0])

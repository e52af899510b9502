"""Headless Chromium driven by Playwright: the `browser` and `page` fixtures of the page tests
and the end-to-end tests that drive the page (a plugin of tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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

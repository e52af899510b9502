"""Hostile text from every source the page shows besides the prompt (that one is in
test_page.py): the SAE's description, an upstream's error message, and the run id in the
address (#run= and ?run=). Shown as text, nothing injected runs.

Upstreams are the stubs (tests/backend/stubs.py, mode ``hostile``): the real services cannot be
made to answer such text on cue; the stubs' answers are held to the real services' models."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from backend.app import create_app
from tests.backend.conftest import backend_settings
from tests.backend.page.test_page import PAGE, open_page
from tests.backend.stubs import HOSTILE
from tests.support.browser import drop_provoked
from tests.support.databases import create_database
from tests.support.servers import serve_app

pytestmark = [pytest.mark.browser]

# Without "/" (with one the API's path does not match at all: a plain 404).
HOSTILE_ID = '<img src=x onerror="window.__xss=1"><b id="injected">bold<b> & "quoted"'


@pytest.fixture(scope="module")
def stub_backend_url(pg_uri, stub_urls):
    uri = create_database(pg_uri, prefix="hostile", migrate=True)
    with serve_app(create_app(backend_settings(uri, stub_urls))) as url:
        yield url


def assert_nothing_injected(page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.getElementById('injected')") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # the page's own module only


def test_sae_description_and_upstream_error_are_text(page, stub_backend_url, stub_states):
    stub_states["sae"].mode = "hostile"
    stub_states["engine"].mode = "hostile"
    open_page(page, stub_backend_url)
    assert page.locator("#sae-note").text_content() == HOSTILE
    page.fill("#prompt", "hello")
    page.fill("#max-tokens", "4")
    page.click("#run-button")
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error-message").text_content()
    assert message.endswith(HOSTILE) and "engine rejected the request" in message
    assert "upstream: engine" in page.locator("#error-meta").text_content()
    assert_nothing_injected(page)
    # The engine's rejection (422) is in the console (Chromium logs every failed resource).
    drop_provoked(
        page, r"^console error: Failed to load resource: .*status of 422 .*/activations/run\)$"
    )
    assert page.problems == []


@pytest.mark.parametrize("hostile", [HOSTILE_ID, HOSTILE])
@pytest.mark.parametrize("where", ["#run=", "?run="])
def test_run_id_in_the_address_is_text(page, stub_backend_url, where, hostile):
    page.goto(stub_backend_url + PAGE + where + quote(hostile, safe=""))
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#error:not([hidden])")
    # Refused by the API (the id pattern, or no such route), and said so in text.
    assert page.locator("#error-message").text_content() in (
        "Not Found",
        "request_id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,127}$'",
    )
    assert_nothing_injected(page)
    # The refused read of that id (404 or 422, as above) is in the console: that one only.
    refused = re.escape(f"{PAGE}/{quote(hostile, safe='')}")
    drop_provoked(
        page, rf"^console error: Failed to load resource: .*status of 4(04|22) .*{refused}\)$"
    )
    assert page.problems == []

"""The page streams its runs (real headless Chromium, real stack as test_page): tokens show
before the run is done, Run becomes Stop and Stop cancels (the run stored as stopped, with its
partial answer and features, and shown so), and the page a streamed run ends on equals the page
of the same run opened from Recent Runs."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.backend.page.test_page import API, open_page, run_in_page, wait_rows_loaded
from tests.support.servers import SERVICE_AUTH

pytestmark = [pytest.mark.browser, pytest.mark.vllm]

# Records, at every change of the token view, how many tokens it shows, whether the page
# is still streaming and what the status line says.
WATCH_TOKENS = """
() => {
  window.tokenViews = [];
  new MutationObserver(() => window.tokenViews.push({
    tokens: document.querySelectorAll('#tokens .tok').length,
    streaming: document.body.dataset.streaming === 'true',
    status: document.querySelector('#run-status').textContent,
    button: document.querySelector('#run-button').textContent,
  })).observe(document.querySelector('#tokens'), {childList: true});
}
"""


def shown_page(page) -> dict:
    return {
        "tokens": page.inner_html("#tokens"),
        "summary": page.inner_text("#run-summary"),
        "top": page.inner_html("#top-features tbody"),
        "rows": page.inner_html("#rows tbody"),
    }


def test_tokens_stream_in_and_the_final_page_equals_the_stored_run(page, backend_url):
    open_page(page, backend_url)
    page.evaluate(WATCH_TOKENS)
    request_id = run_in_page(page, "Tell me a story about the sea.", max_tokens=48)
    views = page.evaluate("window.tokenViews")
    final = page.locator("#tokens .tok").count()
    streamed = [v for v in views if v["streaming"]]
    # Tokens were on the page while the run was still going, fewer than at the end, under a
    # Stop button.
    assert any(0 < v["tokens"] < final for v in streamed), views
    assert all(v["button"] == "Stop" and not v["status"].startswith("Done") for v in streamed)
    status = page.inner_text("#run-status")
    assert status.startswith("Done in") and "first token" in status
    # The button turns back once the finished run is drawn (after "Done in"): waited for.
    page.wait_for_function("document.querySelector('#run-button').textContent === 'Run'")
    page.wait_for_selector("#top-features tbody tr")
    after_stream = shown_page(page)

    # The same run opened from Recent Runs shows the same page.
    page.goto(backend_url + "/playground/activations")
    page.wait_for_selector("body[data-ready=true]")
    page.click(f"#recent-runs .run-item[data-request-id='{request_id}']")
    page.wait_for_function(
        "id => document.querySelector('#run-summary').textContent.includes(id)", arg=request_id
    )
    wait_rows_loaded(page)
    page.wait_for_selector("#top-features tbody tr")
    assert shown_page(page) == after_stream
    assert page.problems == []


def test_stop_keeps_the_partial_run(page, backend_url, engine_url):
    open_page(page, backend_url)
    page.fill("#prompt", "Count to a thousand, slowly.")
    page.fill("#max-tokens", "2000")
    page.check("#show-prompt-tokens")
    page.click("#run-button")
    # Stopped once the prompt's features (its tokens shaded) and a few output tokens are in.
    page.wait_for_function(
        "document.querySelectorAll('#tokens .tok:not(.prompt)').length >= 3 && [...document"
        ".querySelectorAll('#tokens .tok.prompt')].some(t => parseFloat(t.style"
        ".getPropertyValue('--strength')) > 0)"
    )
    assert "SAEnone" not in page.evaluate("document.querySelector('#run-summary').textContent")
    assert page.inner_text("#run-button") == "Stop"
    page.click("#run-button")
    page.wait_for_function("document.querySelector('#run-status').textContent === 'Stopped'")
    assert page.inner_text("#run-button") == "Run"
    assert page.locator("#error").is_hidden()
    # The stored run (status stopped) replaces the live one: tokens kept, tables filled.
    page.wait_for_function(
        "document.querySelector('#run-summary').textContent.includes('Statusstopped')"
    )
    wait_rows_loaded(page)
    # Its features so far: the prompt's at least (an output chunk comes every 16 tokens, so the
    # output may have none yet when Stop is pressed early).
    page.select_option("#top-segment", "all")
    page.wait_for_selector("#top-features tbody tr")
    page.uncheck("#show-prompt-tokens")
    assert page.locator("#tokens .tok").count() >= 3
    assert "demo_random" in page.inner_text("#run-summary")
    assert "Streaming" not in page.inner_text("#top-features-card")
    # The run was new: its owner token came with `started` and was kept.
    owners = page.evaluate("JSON.parse(localStorage.getItem('playground.runOwners'))")
    (request_id,) = owners

    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{backend_url}{API}/{request_id}", timeout=30)
        engine_busy = httpx.get(engine_url + "/health", headers=SERVICE_AUTH, timeout=30).json()[
            "in_flight"
        ]
        if response.status_code == 200 and not engine_busy:
            break
        assert time.monotonic() < deadline, (response.status_code, engine_busy)
        time.sleep(0.2)
    run = response.json()
    assert run["status"] == "stopped" and run["error"]["code"] == "client_closed"
    assert len(run["output"]["token_ids"]) >= 3 and run["output"]["text"]
    assert any(e["features"] for e in run["preview"]["feature_timeline"])
    stopped_view = shown_page(page)

    # Listed as stopped (not failed), and reopened as it was.
    page.click("#runs-refresh")
    item = page.locator(f"#recent-runs .run-item[data-request-id='{request_id}']")
    assert item.locator(".run-flags").inner_text() == "stopped"
    page.goto(f"{backend_url}/playground/activations?run={request_id}")
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)
    page.select_option("#top-segment", "all")  # as above
    page.wait_for_selector("#top-features tbody tr")
    assert shown_page(page) == stopped_view
    assert page.problems == []

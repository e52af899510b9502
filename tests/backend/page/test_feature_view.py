"""The feature view in real headless Chromium on the real stack (as test_page): a feature opened
from the top features table shows the stored runs it fired in, the open run among them, and
opens another run; label search finds an imported label and opens its feature."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from backend.features.catalog import import_labels
from tests.backend.page.test_page import PAGE, api_run, wait_rows_loaded
from tests.support.databases import run_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.vllm]

SAE_ID, LAYER = "demo_random", 16


def open_run(page, base_url: str, request_id: str) -> None:
    page.goto(f"{base_url}{PAGE}?run={request_id}")
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)


def feature_api(base_url: str, feature_id: int) -> dict:
    response = httpx.get(f"{base_url}/playground/features/{SAE_ID}/{LAYER}/{feature_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_feature_view_from_top_features(page, backend_url, page_db, artifacts_dir):
    prompt = "Describe the moon in one short sentence."
    other = api_run(backend_url, prompt)["request_id"]  # greedy: the same features twice
    current = api_run(backend_url, prompt)["request_id"]
    open_run(page, backend_url, current)

    row = page.locator("#top-features tbody tr").first
    feature = int(row.get_attribute("data-feature"))
    row.focus()
    page.keyboard.press("Enter")  # keyboard reachable, like a click
    page.wait_for_selector(f"#feature-view[data-feature='{feature}']")

    body = feature_api(backend_url, feature)
    shown = page.locator("#feature-view li.top-run").evaluate_all(
        "items => items.map(li => li.dataset.run)"
    )
    assert shown == [r["request_id"] for r in body["top_runs"]]
    assert {current, other} <= set(shown)
    assert page.locator(f"#feature-view li.top-run.current[data-run='{current}']").count() == 1
    density = body["density"]
    assert (
        f"Fired in {density['runs_fired']} of {density['runs_total']} runs"
        in page.locator("#feature-view .density").inner_text()
    )
    # Its token window is there, shaded: the max position's token is outlined.
    top = page.locator(f"#feature-view li.top-run[data-run='{current}']")
    window = next(r["window"] for r in body["top_runs"] if r["request_id"] == current)
    assert top.locator(".tok").count() == len(window) > 0
    assert top.locator(".tok.pinned").count() == 1
    assert page.locator("#feature-view svg.histogram rect").count() > 0
    page.screenshot(path=str(artifacts_dir / "page-feature.png"), full_page=True)

    # Open the other run from the feature's top contexts.
    page.click(f"#feature-view li.top-run[data-run='{other}'] button.open-run")
    page.wait_for_function(
        "id => new URLSearchParams(location.search).get('run') === id", arg=other
    )
    page.wait_for_function(
        "id => document.querySelector('#run-summary').textContent.includes(id)", arg=other
    )
    page.wait_for_selector(f"#feature-view li.top-run.current[data-run='{other}']")
    assert page.locator("#error").is_hidden()
    assert page.problems == []

    # Label search: an imported label finds its feature, which opens in place.
    async def load_label() -> None:
        conn = await asyncpg.connect(page_db)
        try:
            await import_labels(conn, SAE_ID, LAYER, {feature: "lunar <b>surface</b>"}, None)
        finally:
            await conn.close()

    run_in_thread(load_label)
    page.fill("#feature-q", "luna")
    page.press("#feature-q", "Enter")
    result = page.locator(f"#feature-results button[data-feature='{feature}']")
    result.wait_for()
    assert "lunar <b>surface</b>" in result.inner_text()  # text, not markup
    result.click()  # clears the view's data-feature at once, so the wait below is for this open
    page.wait_for_selector(f"#feature-view[data-feature='{feature}']")
    assert page.locator("#feature-view .feature-label").inner_text() == "lunar <b>surface</b>"
    assert page.locator("#feature-view b").count() == 0

    # The run's own tables name the feature by its label, as text (reopened: labels load once
    # per SAE and page).
    open_run(page, backend_url, current)
    labelled = page.locator(f"#top-features tbody tr[data-feature='{feature}'] td.label-text")
    assert labelled.inner_text() == "lunar <b>surface</b>"
    texts = page.locator("#top-features tbody td.label-text").all_inner_texts()
    assert texts.count("lunar <b>surface</b>") == 1  # the other features have no label
    assert page.locator("#top-features b, #rows b, #token-detail b").count() == 0
    assert page.problems == []

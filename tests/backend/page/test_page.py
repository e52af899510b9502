"""The /playground/activations page in real headless Chromium, on the real stack: vLLM engine and
SAE service on the tiny model, the backend on a fresh Postgres database. What the page shows is
checked against what the API answers."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.backend.page.conftest import drop_provoked

pytestmark = [pytest.mark.browser, pytest.mark.vllm]

PAGE = "/playground/activations"
API = "/playground/activations"
EN_DASH = "\u2013"  # the page writes row ranges with an en dash


def open_page(page, base_url: str, request_id: str | None = None) -> None:
    page.goto(base_url + PAGE + (f"#run={request_id}" if request_id else ""))
    page.wait_for_selector("body[data-ready=true]")


def run_in_page(page, prompt: str, max_tokens: int = 12) -> str:
    """Submit the form; wait until the run, its rows and its top features are shown."""
    page.fill("#prompt", prompt)
    page.fill("#max-tokens", str(max_tokens))
    page.click("#run-button")
    page.wait_for_function(
        "document.querySelector('#run-status').textContent.startsWith('Done')"
        " || !document.querySelector('#error').hidden"
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    wait_rows_loaded(page)
    # The page keeps the open run in the address bar as ?run=<id>.
    return page.evaluate("new URLSearchParams(location.search).get('run')")


def wait_rows_loaded(page) -> None:
    page.wait_for_function(
        "/^(Rows \\d|No rows)/.test(document.querySelector('#rows-range').textContent)"
    )


def range_text(rows_page: dict) -> str:
    """What the page writes under the rows table for an API rows page (exact: a substring
    match can hit the previous page's text, e.g. "of 10" in "of 1020")."""
    total, offset, count = rows_page["total"], rows_page["offset"], len(rows_page["rows"])
    if not total:
        return "No rows match these filters."
    return f"Rows {offset + 1}{EN_DASH}{offset + count} of {total}"


def wait_range(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#rows-range').textContent === t", arg=text)


def api_run(base_url: str, prompt: str, max_tokens: int = 12) -> dict:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
    response = httpx.post(base_url + API + "/run", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def api_get(base_url: str, path: str, **params) -> dict:
    response = httpx.get(base_url + API + path, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def column(page, table: str, index: int) -> list[str]:
    return page.locator(f"#{table} tbody tr td:nth-child({index})").all_inner_texts()


def test_run_end_to_end(page, backend_url, artifacts_dir):
    open_page(page, backend_url)
    # Health badge: Postgres, engine and SAE service all up.
    page.wait_for_function(
        "[...document.querySelectorAll('#health .pill')]"
        ".every(p => p.classList.contains('pill-ok'))"
    )
    # SAE choices come from the SAE service, the demo SAE labelled as such.
    assert "demo" in page.locator("#sae-id option:checked").inner_text()
    assert page.input_value("#model-id") == "meta-llama/Llama-3.1-8B-Instruct"

    request_id = run_in_page(page, "Name three colors.")
    run = api_get(backend_url, f"/{request_id}")
    timeline = run["preview"]["feature_timeline"]
    output = [entry for entry in timeline if entry["segment"] == "output"]
    assert page.locator("#tokens .tok").count() == len(output) > 0
    assert request_id in page.locator("#run-summary").inner_text()
    assert page.locator("#run-status").inner_text().startswith("Done in")

    rows = api_get(backend_url, f"/{request_id}/rows", limit=50)
    assert rows["total"] > 0
    assert page.locator("#rows tbody tr").count() == len(rows["rows"])
    assert f"of {rows['total']}" in page.locator("#rows-range").inner_text()
    top = api_get(backend_url, f"/{request_id}/top-features", segment="output", limit=50)
    assert page.locator("#top-features tbody tr").count() == len(top["top_features"]) > 0
    assert page.locator("#top-features tbody tr svg.spark").count() == len(top["top_features"])
    shown = [int(text.lstrip("#")) for text in column(page, "top-features", 1)]
    assert shown == [f["feature_id"] for f in top["top_features"]]

    # Hovering a token lists its features.
    entry = next(e for e in output if e["features"])
    page.hover(f"#tokens .tok[data-position='{entry['position']}']")
    detail = page.locator("#token-detail")
    assert f"position {entry['position']}" in detail.inner_text()
    assert detail.locator(".feature-chip").count() == len(entry["features"])
    page.screenshot(path=str(artifacts_dir / "page-run.png"), full_page=True)

    # Clicking a feature shades tokens by it and filters the rows to it.
    feature = entry["features"][0]["feature_id"]
    detail.locator(f".feature-chip[data-feature='{feature}']").click()
    page.wait_for_function(
        f"[...document.querySelectorAll('#rows tbody tr td:nth-child(4)')]"
        f".every(td => td.textContent === '#{feature}')"
    )
    assert page.input_value("#f-feature") == str(feature)

    # Top Features sorts by a clicked column, both ways.
    page.click("#top-features th[data-key='hits']")
    hits = [int(text) for text in column(page, "top-features", 5)]
    assert hits == sorted(hits, reverse=True)
    page.click("#top-features th[data-key='hits']")
    hits = [int(text) for text in column(page, "top-features", 5)]
    assert hits == sorted(hits)
    assert page.problems == []


def test_filter_and_page_rows(page, backend_url, artifacts_dir):
    run = api_run(backend_url, "Count from one to ten.", max_tokens=16)
    request_id = run["request_id"]
    open_page(page, backend_url, request_id)
    wait_rows_loaded(page)
    feature = run["preview"]["top_features"][0]["feature_id"]

    page.fill("#f-feature", str(feature))
    page.select_option("#f-segment", "output")
    page.fill("#f-rank", "5")
    page.click("#rows-apply")
    expected = api_get(
        backend_url,
        f"/{request_id}/rows",
        feature_id=feature,
        segment="output",
        rank_max=5,
        limit=50,
    )
    wait_range(page, range_text(expected))
    assert set(column(page, "rows", 4)) <= {f"#{feature}"}
    assert all(int(rank) <= 5 for rank in column(page, "rows", 7))
    assert "—" not in column(page, "rows", 2)  # output rows only: every row has a step
    assert len(column(page, "rows", 1)) == len(expected["rows"])

    # Token range [2, 6) over every feature.
    page.click("#rows-clear")
    page.fill("#f-start", "2")
    page.fill("#f-end", "6")
    page.click("#rows-apply")
    expected = api_get(backend_url, f"/{request_id}/rows", token_start=2, token_end=6, limit=50)
    wait_range(page, range_text(expected))
    positions = [int(p) for p in column(page, "rows", 1)]
    assert positions and all(2 <= p < 6 for p in positions)
    page.screenshot(path=str(artifacts_dir / "page-rows-filtered.png"), full_page=True)

    # Paging through every row, 25 at a time.
    page.click("#rows-clear")
    page.select_option("#f-limit", "25")
    total = api_get(backend_url, f"/{request_id}/rows", limit=1)["total"]
    assert total > 25  # 16 output tokens plus the chat template, up to 20 features each
    page.wait_for_function(
        "t => document.querySelector('#rows-range').textContent === t",
        arg=f"Rows 1{EN_DASH}25 of {total}",
    )
    assert page.locator("#rows-prev").is_disabled()
    page.click("#rows-next")
    page.wait_for_function(
        "t => document.querySelector('#rows-range').textContent.startsWith(t)",
        arg=f"Rows 26{EN_DASH}",
    )
    second = api_get(backend_url, f"/{request_id}/rows", limit=25, offset=25)
    assert [int(p) for p in column(page, "rows", 1)] == [
        r["token_position"] for r in second["rows"]
    ]

    # Bad input: the backend's validation message is shown, the page stays usable.
    page.fill("#f-rank", "0")
    page.click("#rows-apply")
    page.wait_for_selector("#error:not([hidden])")
    assert "rank_max" in page.locator("#error-message").inner_text()
    assert "HTTP 422" in page.locator("#error-meta").inner_text()
    assert page.locator("#run-form").is_visible()
    # The rejected fetch is in the console (Chromium logs every failed resource): the one 422
    # this test asked for, nothing else.
    drop_provoked(
        page, r"^console error: Failed to load resource: .*status of 422 .*/rows\?rank_max=0&"
    )
    assert page.problems == []


def test_recent_runs_survive_a_reload_and_open_a_past_run(page, backend_url, artifacts_dir):
    open_page(page, backend_url)
    request_id = run_in_page(page, "Which planet is largest?")
    page.goto(backend_url + PAGE)  # a fresh load, no run in the URL
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#tokens .tok").count() == 0
    item = page.locator(f"#recent-runs .run-item[data-request-id='{request_id}']")
    assert "Which planet is largest?" in item.inner_text()
    item.click()
    page.wait_for_function(
        "id => document.querySelector('#run-summary').textContent.includes(id)", arg=request_id
    )
    wait_rows_loaded(page)
    page.wait_for_selector("#top-features tbody tr")
    assert page.locator("#rows tbody tr").count() > 0
    assert item.get_attribute("class").split().count("active") == 1
    page.screenshot(path=str(artifacts_dir / "page-reopened-run.png"), full_page=True)

    # Cursor paging: the list shows 10 runs; "Load more" appends the older ones.
    existing = len(api_get(backend_url, "/runs", limit=200)["runs"])
    for i in range(max(0, 12 - existing)):
        api_run(backend_url, f"Filler run {i}", max_tokens=1)
    total = len(api_get(backend_url, "/runs", limit=200)["runs"])
    page.click("#runs-refresh")
    page.wait_for_function(
        "document.querySelectorAll('#recent-runs .run-item').length === 10"
        " && !document.querySelector('#runs-more').hidden"
    )
    page.click("#runs-more")
    page.wait_for_function(
        "n => document.querySelectorAll('#recent-runs .run-item').length === n",
        arg=min(20, total),
    )
    ids = page.eval_on_selector_all(
        "#recent-runs .run-item", "items => items.map(i => i.dataset.requestId)"
    )
    assert len(set(ids)) == len(ids)  # no run listed twice across pages
    assert page.problems == []


def test_no_feature_delta_panel(page, backend_url):
    run = api_run(backend_url, "Hello there.")
    open_page(page, backend_url, run["request_id"])
    wait_rows_loaded(page)
    assert not re.search(r"delta", page.locator("body").inner_text(), re.IGNORECASE)
    assert not page.evaluate(
        "[...document.querySelectorAll('*')].some(e => /delta/i.test(e.id + ' ' + e.className))"
    )


def test_html_in_a_prompt_is_shown_as_text_and_runs_nothing(page, backend_url, artifacts_dir):
    hostile = (
        '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
        '<b id="injected">bold</b> & "quoted"'
    )
    open_page(page, backend_url)
    request_id = run_in_page(page, hostile)
    # Recent Runs refreshes after the run is shown: wait for this run's own entry.
    listed = page.locator(f"#recent-runs .run-item[data-request-id='{request_id}']")
    listed.wait_for()
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.getElementById('injected')") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # the page's own module only
    assert page.locator("#run-summary .prompt-text").text_content() == hostile
    assert listed.locator(".run-prompt").text_content() == hostile
    page.screenshot(path=str(artifacts_dir / "page-html-prompt.png"), full_page=True)
    assert page.problems == []


def test_engine_down_is_reported_plainly(page, engineless_backend_url, artifacts_dir):
    open_page(page, engineless_backend_url)
    page.wait_for_function(
        "document.querySelector('#health .pill[data-service=engine]')"
        ".classList.contains('pill-down')"
    )
    page.fill("#prompt", "Is anyone there?")
    page.click("#run-button")
    page.wait_for_selector("#error:not([hidden])")
    assert "engine" in page.locator("#error-message").inner_text()
    meta = page.locator("#error-meta").inner_text()
    assert "upstream: engine" in meta and "HTTP 503" in meta
    # The failed run is recorded and listed as failed.
    page.wait_for_selector("#recent-runs .run-flags")
    assert "failed" in page.locator("#recent-runs .run-flags").first.inner_text()
    page.screenshot(path=str(artifacts_dir / "page-engine-down.png"), full_page=True)
    # The run's 503 is in the console (Chromium logs every failed resource): that one only.
    drop_provoked(
        page,
        r"^console error: Failed to load resource: .*status of 503 .*/activations/run\)$",
    )
    assert page.problems == []


def test_delete_offered_on_runs_made_here_and_a_foreign_write_explained(page, backend_url):
    """The page keeps the owner tokens of its own runs (localStorage): their Recent Runs items
    offer Delete, which removes the run for everyone. A run made elsewhere offers none."""
    foreign = httpx.post(
        backend_url + "/playground/activations/run",
        json={"prompt": "made elsewhere", "max_tokens": 4},
        timeout=300,
    ).json()["request_id"]
    open_page(page, backend_url)
    request_id = run_in_page(page, "Delete me later", max_tokens=4)
    tokens = page.evaluate("JSON.parse(localStorage.getItem('playground.runOwners'))")
    assert set(tokens) == {request_id} and len(tokens[request_id]) >= 40
    page.click("#runs-refresh")
    mine = f"#recent-runs .run-delete[data-request-id='{request_id}']"
    page.wait_for_selector(mine)
    assert page.locator(f"#recent-runs .run-delete[data-request-id='{foreign}']").count() == 0
    page.click(mine)
    page.wait_for_function(
        "id => !document.querySelector(`#recent-runs .run-item[data-request-id='${id}']`)",
        arg=request_id,
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    gone = httpx.get(backend_url + f"/playground/activations/{request_id}", timeout=30)
    assert gone.status_code == 404
    assert page.evaluate("JSON.parse(localStorage.getItem('playground.runOwners'))") == {}

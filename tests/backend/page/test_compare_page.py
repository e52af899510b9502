"""The Compare card in real headless Chromium on the real stack (as test_page): two runs compared
from Recent Runs and from the run view; the chart and both aligned texts show what the API
answers; a feature opens from the chart; the downloads work; no horizontal scroll at 390 px."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.backend.page.test_page import api_get, api_run, open_page, wait_rows_loaded

pytestmark = [pytest.mark.browser, pytest.mark.vllm]


def downloaded(page, kind: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.click(f"#compare-downloads a[data-kind='{kind}']")
    download = info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def test_compare_two_runs_from_recent_runs(page, backend_url, artifacts_dir):
    a = api_run(backend_url, "Describe the moon in one short sentence.")["request_id"]
    b = api_run(backend_url, "Describe the sea in one short sentence.")["request_id"]
    open_page(page, backend_url)
    page.click(f"#recent-runs .run-item[data-request-id='{a}']")
    wait_rows_loaded(page)
    page.click(f"#recent-runs .run-compare[data-request-id='{b}']")
    page.wait_for_selector("#compare-card[data-ready=true]")
    assert page.locator("#compare-card").get_attribute("data-a") == a
    assert page.locator("#compare-card").get_attribute("data-b") == b

    body = api_get(backend_url, "/compare", a=a, b=b, limit=20)
    chart = page.locator("#compare-chart .cmp-row").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.feature))"
    )
    assert chart == [f["feature_id"] for f in body["features"]] and chart
    al = body["alignment"]
    for side in ("a", "b"):
        tokens = page.locator(f"#compare-{side} .ctok")
        assert tokens.count() == len(al[f"{side}_tokens"])
        diff = sum(
            op[f"{side}_end"] - op[f"{side}_start"] for op in al["opcodes"] if op["tag"] != "equal"
        )
        assert page.locator(f"#compare-{side} .ctok.diff").count() == diff
        assert page.locator(f"#compare-{side} .ctok.moved").count() == len(al["positions"])
    assert al["prefix"] > 0  # one chat template: the prompts share their start
    if al["positions"]:
        first = al["positions"][0]
        page.click(f"#compare-a .ctok.moved[data-position='{first['a_position']}']")
        assert (
            f"Position {first['a_position']} in A" in page.locator("#compare-detail").inner_text()
        )

    # Downloads: the comparison as CSV, and each run (CSV and JSON).
    name, text = downloaded(page, "compare-csv")
    assert name.startswith("compare-") and name.endswith(".csv")
    lines = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(lines) == body["total_features"]
    assert [int(line["feature_id"]) for line in lines[:20]] == chart
    name, text = downloaded(page, "a-csv")
    assert name == f"activations-{a}.csv"
    assert text.startswith("token_position,step,segment,special,token_id,token,rank,")
    name, _ = downloaded(page, "b-json")
    assert name == f"activations-{b}.json"

    # A feature of the chart opens its view.
    page.click(f"#compare-chart .cmp-row[data-feature='{chart[0]}']")
    page.wait_for_selector(f"#feature-view[data-feature='{chart[0]}']")

    # At 390 px wide nothing of the Compare card or of Recent Runs (with its Compare actions)
    # reaches past the viewport (the rest of the page is another issue's).
    page.set_viewport_size({"width": 390, "height": 900})
    page.wait_for_timeout(200)
    outside = page.evaluate(
        "() => [...document.querySelectorAll("
        "'#compare-card, #compare-card *, #recent-runs-card *')]"
        ".filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)"
        ".map(e => `${e.tagName}.${e.className}`)"
    )
    assert outside == []
    assert page.evaluate(
        "(c => c.scrollWidth <= c.clientWidth)(document.querySelector('#compare-card'))"
    )
    page.screenshot(path=str(artifacts_dir / "page-compare-390.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})

    # From the run view: "Compare…" picks the open run, then a run of Recent Runs.
    page.click(f"#recent-runs .run-item[data-request-id='{b}']")
    wait_rows_loaded(page)
    page.click("#compare-open")
    page.click(f"#recent-runs .run-compare[data-request-id='{a}']")
    page.wait_for_function(
        "([a, b]) => { const c = document.querySelector('#compare-card');"
        " return c.dataset.ready === 'true' && c.dataset.a === a && c.dataset.b === b; }",
        arg=[b, a],
    )
    page.screenshot(path=str(artifacts_dir / "page-compare.png"), full_page=True)
    assert page.locator("#error").is_hidden()
    assert page.problems == []

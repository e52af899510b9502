"""Steering from the page (real headless Chromium, real stack as test_page: the vLLM engine
steering inside its batches, the SAE service's decoder rows): a feature added from Top
Features, its strength set, Run steered; the steered and default answers both appear, with the
read-back figures the API stored; the pair reopens from Recent Runs; at 390 px the panel and
the pair fit the width."""

from __future__ import annotations

import pytest

from tests.backend.page.test_page import api_get, open_page, run_in_page

pytestmark = [pytest.mark.browser, pytest.mark.vllm]

# Nothing of the Steer panel or the pair card reaches past the viewport (wide tables scroll
# inside their own box). The page's other cards are not this test's business.
PAST_THE_EDGE = """
() => [...document.querySelectorAll('#steer-card, #steer-card *, #pair-card, #pair-card *')]
  .filter(e => !e.closest('.table-scroll') || e.classList.contains('table-scroll'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .map(e => e.tagName + '.' + e.className)
"""


def steer_from_page(page, strength: str) -> str:
    """Add the first Top Features row's feature, set its strength, run; the steered run's id."""
    page.locator("#top-features tbody tr .steer-add").first.click()
    page.wait_for_selector("#steer-list .steer-item")
    page.fill("#steer-list .steer-item input[type=number]", strength)
    page.click("#steer-run")
    page.wait_for_function(
        "document.querySelector('#steer-status').textContent.startsWith('Done')"
        " || !document.querySelector('#error').hidden"
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    page.wait_for_selector("#pair-card[data-live=false] .pair-figures tbody tr")
    return page.evaluate("new URLSearchParams(location.search).get('run')")


def shown_pair(page) -> dict:
    return {
        role: page.locator(f"#pair-columns .pair-col[data-role={role}] .tok").count()
        for role in ("steered", "default")
    }


def test_steer_from_the_page_and_reopen_the_pair(page, backend_url):
    open_page(page, backend_url)
    run_in_page(page, "Describe the ocean.", max_tokens=12)
    feature = int(page.locator("#top-features tbody tr").first.get_attribute("data-feature"))
    page.fill("#max-tokens", "10")
    steered_id = steer_from_page(page, "40")

    steered = api_get(backend_url, f"/{steered_id}")
    assert steered["pair"]["role"] == "steered"
    default = api_get(backend_url, f"/{steered['pair']['request_id']}")
    figure = steered["steering"]["features"][0]
    assert (figure["feature_id"], figure["strength"]) == (feature, 40.0)

    # Both answers on the page, token for token as stored.
    def n_output(run):
        return sum(1 for e in run["preview"]["feature_timeline"] if e["segment"] == "output")

    assert shown_pair(page) == {"steered": n_output(steered), "default": n_output(default)}
    assert n_output(steered) > 0 and n_output(default) > 0
    # The figures shown are the stored ones.
    row = page.locator(f"#pair-figures tr[data-feature='{feature}']")
    assert row.locator(".fig-steered-max").inner_text() == f"{figure['steered']['max']:.3f}"
    assert row.locator(".fig-default-max").inner_text() == f"{figure['default']['max']:.3f}"

    # Reopened from Recent Runs (a fresh page), the default run shows its pair too.
    open_page(page, backend_url)
    assert page.locator("#pair-card").is_hidden()
    page.click(f"#recent-runs .run-item[data-request-id='{default['request_id']}']")
    page.wait_for_selector("#pair-card:not([hidden]) .pair-figures tbody tr")
    assert shown_pair(page) == {"steered": n_output(steered), "default": n_output(default)}
    # And from its permalink.
    open_page(page, backend_url, steered_id)
    page.wait_for_selector("#pair-card:not([hidden]) .pair-figures tbody tr")
    assert not page.problems, page.problems


def test_the_steer_panel_and_pair_at_390_px(browser, backend_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        open_page(page, backend_url)
        run_in_page(page, "Name a fruit.", max_tokens=8)
        page.fill("#max-tokens", "8")
        steer_from_page(page, "-20")
        assert page.locator("#pair-card").is_visible()
        assert page.locator("#pair-columns .pair-col[data-role=default] .tok").count() > 0
        assert page.evaluate(PAST_THE_EDGE) == []
    finally:
        context.close()

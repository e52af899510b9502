"""The page as a first-time user meets it (issue 22), in real headless Chromium on the real
stack (as test_page): the demo badge, the bounds the form checks, the Run button after Done,
the address bar on opening a run, a long prompt, labels in the token panel, a phone's width and
order, the help panel, the histogram's axes and the activation track."""

from __future__ import annotations

import httpx
import pytest

from tests.backend.page.conftest import VIEWPORT, watch_problems
from tests.backend.page.test_page import API, PAGE, api_get, api_run, run_in_page, wait_rows_loaded

pytestmark = [pytest.mark.browser, pytest.mark.vllm]

PHONE = {"width": 390, "height": 844}
STATE = "import('/playground/assets/js/state.js').then(m => m.state)"


def open_run(page, base_url: str, request_id: str) -> None:
    page.goto(f"{base_url}{PAGE}?run={request_id}")
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, bypass_csp=True, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch_problems(page)
    yield page
    context.close()


def reopen(page, request_id: str) -> None:
    """Open the run again from Recent Runs (the summary is drawn anew)."""
    page.evaluate("document.querySelector('#run-summary').replaceChildren()")
    page.click(f"#recent-runs .run-item[data-request-id='{request_id}']")
    page.wait_for_function(
        "id => document.querySelector('#run-summary').textContent.includes(id)", arg=request_id
    )


# Defect 1: the trained demo SAE (labelled) carried the random-weights badge.
def test_demo_badge_names_random_weights_only_for_the_random_sae(page, backend_url):
    open_run(page, backend_url, api_run(backend_url, "Name a fruit.")["request_id"])
    request_id = page.evaluate("new URLSearchParams(location.search).get('run')")
    assert "random weights" in page.inner_text("#run-summary")  # demo_random: no labels
    # The same SAE as the catalogue would list a trained one: labelled, a demo.
    page.evaluate(f"{STATE}.then(s => {{ s.saes.forEach(x => {{ x.has_labels = true; }}); }})")
    reopen(page, request_id)
    summary = page.inner_text("#run-summary")
    assert "random weights" not in summary and "demo SAE: small, trained" in summary
    assert page.problems == []


# Defects 6, 7 and 8: the form's bounds come from the backend, are checked before sending,
# and every problem is listed.
def test_the_form_checks_the_backends_bounds_before_sending(page, backend_url):
    page.goto(backend_url + PAGE)
    page.wait_for_selector("body[data-ready=true]")
    limits = page.evaluate("JSON.parse(document.querySelector('meta[name=run-limits]').content)")
    cap = limits["max_tokens"]["max"]
    assert page.get_attribute("#max-tokens", "max") == str(cap)
    assert page.get_attribute("#sae-top-k", "max") == str(limits["sae_top_k"]["max"])
    assert page.get_attribute("#prompt", "maxlength") == str(limits["prompt"]["max_length"])
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    page.fill("#prompt", "")
    page.fill("#max-tokens", "100000")
    page.click("#run-button")
    page.wait_for_selector("#error:not([hidden])")
    problems = page.locator("#error-details li").all_inner_texts()
    assert len(problems) == 2, problems
    assert problems[0].startswith("prompt:")
    assert problems[1] == f"max_tokens: at most {cap}"
    assert "2 problems" in page.inner_text("#error-message")

    # One problem: named in the message; the API names the same number.
    page.fill("#prompt", "Hello")
    page.fill("#max-tokens", "3000")
    page.click("#run-button")
    page.wait_for_function(
        "t => document.querySelector('#error-message').textContent === t",
        arg=f"max_tokens: at most {cap}",
    )
    api = httpx.post(backend_url + API + "/run", json={"prompt": "Hello", "max_tokens": 3000})
    assert api.status_code == 422 and api.json()["error"]["message"] == f"max_tokens: at most {cap}"

    # A prompt of whitespace does not run the model.
    page.fill("#prompt", "   \n\t ")
    page.fill("#max-tokens", "8")
    page.click("#run-button")
    page.wait_for_function(
        "document.querySelector('#error-message').textContent.startsWith('prompt:')"
    )
    assert posts == []
    assert page.problems == []


# Records the Run button's text each time the status line says Done.
WATCH_DONE = """() => {
  window.atDone = [];
  const status = document.querySelector('#run-status');
  const button = document.querySelector('#run-button');
  new MutationObserver(() => {
    if (status.textContent.startsWith('Done')) window.atDone.push(button.textContent);
  }).observe(status, {childList: true, characterData: true, subtree: true});
}"""


# Defect 9: the button read Stop for a moment after Done, and a click then did nothing.
def test_the_button_reads_run_as_soon_as_the_run_is_done(page, backend_url):
    page.goto(backend_url + PAGE)
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate(WATCH_DONE)
    run_in_page(page, "Say hi.", max_tokens=4)
    assert page.evaluate("window.atDone")[0] == "Run"
    assert page.problems == []


# Defect 10: the address named the new run only after everything had loaded.
def test_the_address_names_a_run_as_soon_as_it_is_opened(page, backend_url):
    first = api_run(backend_url, "One.", max_tokens=4)["request_id"]
    second = api_run(backend_url, "Two.", max_tokens=4)["request_id"]
    open_run(page, backend_url, first)
    held = []
    page.route(f"**{API}/{second}", lambda route: held.append(route))
    page.click(f"#recent-runs .run-item[data-request-id='{second}']")
    page.wait_for_function("() => true")
    assert page.evaluate("new URLSearchParams(location.search).get('run')") == second
    page.wait_for_timeout(200)
    assert held, "the run's answer was not held back"
    assert first in page.inner_text("#run-summary")  # still loading the second
    held[0].continue_()
    page.wait_for_function(
        "id => document.querySelector('#run-summary').textContent.includes(id)", arg=second
    )
    assert page.problems == []


# Defect 11: a 1,000-word prompt sat whole in the summary and pushed the output down.
def test_a_long_prompt_is_collapsed_with_show_all(page, backend_url):
    prompt = " ".join(f"word{i}" for i in range(400))
    open_run(page, backend_url, api_run(backend_url, prompt, max_tokens=3)["request_id"])
    shown = page.locator("#run-summary .prompt-text")
    assert len(shown.inner_text()) < 400
    assert page.locator("#tokens").bounding_box()["y"] < VIEWPORT["height"]
    page.click("#run-summary .prompt-toggle")
    assert shown.inner_text() == prompt
    page.click("#run-summary .prompt-toggle")
    assert len(shown.inner_text()) < 400
    assert page.problems == []


# Defect 5: the token panel cut labels ("mixed...", "Britis...").
def test_token_panel_shows_whole_labels(page, backend_url):
    run = api_run(backend_url, "The capital of France is Paris.", max_tokens=6)
    open_run(page, backend_url, run["request_id"])
    entry = next(
        e for e in run["preview"]["feature_timeline"] if e["segment"] == "output" and e["features"]
    )
    label = "British place names: London, Oxford, Manchester, Bristol"
    ids = [f["feature_id"] for f in entry["features"]]
    page.evaluate(f"ids => {STATE}.then(s => ids.forEach(id => s.labels.set(id, {label!r})))", ids)
    page.hover(f"#tokens .tok[data-position='{entry['position']}']")
    chips = page.locator("#token-detail .feature-chip .label-text")
    assert chips.count() == len(ids)
    cut = chips.evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1 || e.textContent !== e.innerText)"
        ".map(e => e.textContent)"
    )
    assert cut == []
    assert all(text == label for text in chips.all_inner_texts())
    assert page.problems == []


# Defects 3 and 4, and the phone's order: prompt, output, features, then recent runs.
def test_a_phone_gets_the_whole_page_in_its_width(phone, backend_url, artifacts_dir):
    prompt = "Describe the sea at night in one sentence."
    api_run(backend_url, prompt, max_tokens=8)
    request_id = api_run(backend_url, prompt, max_tokens=8)["request_id"]
    open_run(phone, backend_url, request_id)
    row = phone.locator("#top-features tbody tr").first
    feature = row.get_attribute("data-feature")
    row.click()
    phone.wait_for_selector(f"#feature-view[data-feature='{feature}']")
    phone.fill("#feature-q", "sea")
    phone.click("#feature-search button")
    phone.wait_for_selector("#feature-results li")
    phone.click("#help-toggle")
    phone.screenshot(path=str(artifacts_dir / "page-phone.png"), full_page=True)

    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width == PHONE["width"]
    wide = phone.evaluate(
        """w => [...document.querySelectorAll('body *')]
          .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > w + 0.5
                       && !e.closest('.table-scroll, .tokens, .track-tokens'))
          .map(e => e.id || e.className || e.tagName)""",
        PHONE["width"],
    )
    assert wide == []
    search = phone.locator("#feature-search button").bounding_box()
    assert search["x"] + search["width"] <= PHONE["width"]
    # A top context's prompt keeps a readable width (it was cut to one letter).
    prompts = phone.locator("#feature-view .top-run-head .prompt-text")
    assert prompts.count() > 0
    assert min(prompts.evaluate_all("els => els.map(e => e.clientWidth)")) >= 150

    order = ["run-form", "run-card", "top-features-card", "feature-card", "recent-runs-card"]
    tops = [phone.locator(f"#{name}").bounding_box()["y"] for name in order]
    assert tops == sorted(tops), dict(zip(order, tops, strict=True))
    assert phone.problems == []


def test_help_panel_and_histogram_axes(page, backend_url):
    prompt = "Numbers: one, two, three."
    api_run(backend_url, prompt, max_tokens=6)
    open_run(page, backend_url, api_run(backend_url, prompt, max_tokens=6)["request_id"])
    assert page.locator("#help").is_hidden()
    page.click("#help-toggle")
    text = page.inner_text("#help")
    for words in ("Features", "sparse autoencoder", "layer", "Activation", "Labels"):
        assert words in text
    assert page.locator("header a[href='/docs']").count() == 1
    page.click("#help-close")
    assert page.locator("#help").is_hidden()

    row = page.locator("#top-features tbody tr").first
    feature = int(row.get_attribute("data-feature"))
    row.click()
    page.wait_for_selector(f"#feature-view[data-feature='{feature}'] svg.histogram")
    labels = page.locator("#feature-view svg.histogram text").all_text_contents()
    assert "positions" in labels and "activation (log scale)" in labels
    body = httpx.get(f"{backend_url}/playground/features/demo_random/16/{feature}").json()
    counts = [c for c in body["histogram"]["counts"] if c]
    assert str(max(counts)) in labels  # the count axis tops at the fullest bin
    assert page.problems == []


# The activation track: one feature over every token, its value on hover.
def test_activation_track_shows_one_feature_over_the_tokens(page, backend_url):
    run = api_run(backend_url, "Tell me about the moon and the stars.", max_tokens=10)
    open_run(page, backend_url, run["request_id"])
    page.wait_for_selector("#track:not([hidden])")
    output = [e for e in run["preview"]["feature_timeline"] if e["segment"] == "output"]
    options = page.locator("#track-feature option").evaluate_all(
        "os => os.map(o => Number(o.value))"
    )
    assert len(options) > 1
    feature = options[1]
    page.select_option("#track-feature", str(feature))
    page.wait_for_selector(f"#track[data-feature='{feature}']")
    tokens = page.locator("#track-tokens .track-tok")
    assert tokens.count() == len(output)
    shown = tokens.evaluate_all("ts => ts.map(t => Number(t.dataset.activation))")
    expected = [
        next((f["activation"] for f in e["features"] if f["feature_id"] == feature), 0.0)
        for e in output
    ]
    assert shown == pytest.approx(expected, abs=1e-6)
    hot = max(range(len(expected)), key=expected.__getitem__)
    assert f"#{feature}: {expected[hot]:.3f}" in tokens.nth(hot).get_attribute("title")
    # Picking it in the track picks it on the page: the tokens are shaded by it too.
    assert f"feature #{feature}" in page.inner_text("#feature-focus-text")
    top = api_get(backend_url, f"/{run['request_id']}/top-features", segment="output", limit=50)
    strongest = top["top_features"][0]["feature_id"]
    page.click(f"#top-features tbody tr[data-feature='{strongest}']")
    page.wait_for_selector(f"#track[data-feature='{strongest}']")
    assert page.problems == []

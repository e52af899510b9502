"""The run permalink, /playground/activations?run=<id>: it opens the run in the page, the address
bar carries it after a run, and the served HTML names the run in Open Graph tags (escaped; plain
for unknown or malformed ids, and when Postgres cannot answer). Real stack, as in test_page."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import httpx
import pytest

from backend.app import create_app
from backend.db.migrate import upgrade
from backend.page.open_graph import DESCRIPTION
from tests.backend.page.conftest import settings_for
from tests.backend.page.test_page import PAGE, api_run, run_in_page, wait_rows_loaded
from tests.support.databases import stop_postgres
from tests.support.servers import serve_app

pytestmark = [pytest.mark.vllm]

HOSTILE = '"><script>alert(1)</script>'
PLAIN_TITLE = "Activations Playground"


class _MetaTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.og: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and (values.get("property") or "").startswith("og:"):
            self.og[values["property"]] = values.get("content") or ""


def og_tags(html: str) -> dict[str, str]:
    """The page's og:* tags as a browser would read them (entities decoded)."""
    parser = _MetaTags()
    parser.feed(html)
    return parser.og


def get_page(base_url: str, **params) -> httpx.Response:
    response = httpx.get(base_url + PAGE, params=params, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response


def assert_plain(response: httpx.Response, base_url: str) -> None:
    og = og_tags(response.text)
    assert og["og:title"] == PLAIN_TITLE
    assert og["og:url"] == base_url + PAGE
    assert og["og:description"] == DESCRIPTION


def test_open_graph_names_the_run_and_escapes_its_prompt(backend_url):
    run = api_run(backend_url, HOSTILE, max_tokens=2)
    request_id = run["request_id"]
    response = get_page(backend_url, run=request_id)
    og = og_tags(response.text)
    assert og["og:title"] == f"{PLAIN_TITLE} · run {request_id}"
    assert og["og:description"] == HOSTILE  # the prompt, read back intact...
    assert og["og:url"] == f"{backend_url}{PAGE}?run={request_id}"
    assert og["og:type"] == "website"
    # ...because it was escaped: the markup is the page's own, one module script and nothing more.
    assert "alert(1)" in response.text
    assert "<script>alert(1)" not in response.text
    assert 'content="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text
    assert response.text.count("<script") == 1
    assert response.text.count("<meta") == 2 + len(og)  # charset, viewport, the OG tags


def test_open_graph_url_uses_public_base_url(page_db, engine_url, sae_url, backend_url):
    request_id = api_run(backend_url, "Share me.", max_tokens=2)["request_id"]
    settings = settings_for(page_db, engine_url, sae_url).model_copy(
        update={"public_base_url": "https://playground.example/"}
    )
    with serve_app(create_app(settings)) as public_url:
        og = og_tags(get_page(public_url, run=request_id).text)
        assert og["og:url"] == f"https://playground.example{PAGE}?run={request_id}"
        assert og["og:description"] == "Share me."
        plain = og_tags(get_page(public_url).text)
        assert plain["og:url"] == f"https://playground.example{PAGE}"


@pytest.mark.parametrize(
    "run_id",
    [
        "no-such-run",
        "runs",  # a reserved name, never a run
        HOSTILE,  # malformed: not looked up
        "x" * 129,  # too long for a request id
        "a\n",
        "",
    ],
)
def test_unknown_or_malformed_run_gives_the_plain_page(backend_url, run_id):
    response = get_page(backend_url, run=run_id)
    assert_plain(response, backend_url)
    assert "alert(1)" not in response.text


def test_plain_page_has_generic_tags(backend_url):
    assert_plain(get_page(backend_url), backend_url)


def test_postgres_down_gives_the_plain_page(throwaway_pg, engine_url, sae_url):
    uri = throwaway_pg.get_uri()
    upgrade(uri)
    with serve_app(create_app(settings_for(uri, engine_url, sae_url))) as url:
        request_id = api_run(url, "Remember me.", max_tokens=2)["request_id"]
        assert og_tags(get_page(url, run=request_id).text)["og:description"] == "Remember me."

        stop_postgres(throwaway_pg)
        started = time.monotonic()
        response = get_page(url, run=request_id)
        assert_plain(response, url)
        assert time.monotonic() - started < 10  # the lookup gives up; the page is not held up


@pytest.mark.browser
def test_query_permalink_opens_the_run(page, backend_url):
    run = api_run(backend_url, "Open me by link.")
    request_id = run["request_id"]
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{backend_url}{PAGE}?run={request_id}")
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)
    assert request_id in page.locator("#run-summary").inner_text()
    output = [e for e in run["preview"]["feature_timeline"] if e["segment"] == "output"]
    assert page.locator("#tokens .tok").count() == len(output) > 0
    assert page.locator("#top-features tbody tr").count() > 0
    assert page.locator("#error").is_hidden()
    assert page.locator('meta[property="og:title"]').get_attribute("content").endswith(request_id)
    assert page.problems == [] and errors == []


@pytest.mark.browser
def test_hash_link_still_opens_and_becomes_a_query_link(page, backend_url):
    request_id = api_run(backend_url, "Old style link.")["request_id"]
    page.goto(f"{backend_url}{PAGE}#run={request_id}")
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)
    assert request_id in page.locator("#run-summary").inner_text()
    assert page.evaluate("location.search + '|' + location.hash") == f"?run={request_id}|"
    assert page.problems == []


@pytest.mark.browser
def test_a_finished_run_puts_its_permalink_in_the_address_bar(page, backend_url):
    page.goto(backend_url + PAGE)
    page.wait_for_selector("body[data-ready=true]")
    request_id = run_in_page(page, "Link to this run.")
    assert request_id
    assert page.url == f"{backend_url}{PAGE}?run={request_id}"
    # Reloading the shared link reopens the run, and the server names it for link previews.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    wait_rows_loaded(page)
    assert request_id in page.locator("#run-summary").inner_text()
    description = page.locator('meta[property="og:description"]').get_attribute("content")
    assert description == "Link to this run."
    assert page.problems == []

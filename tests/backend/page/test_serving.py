"""How the page and its files are served: the strict CSP and nosniff on the page and on every
ES module, JavaScript MIME types, nothing else under static/ reachable, and the modules loading
in Chromium under the real CSP (not bypassed) without a console error."""

from __future__ import annotations

import httpx
import pytest

from backend.app import create_app
from backend.page.router import SECURITY_HEADERS, STATIC_DIR
from tests.backend.page.conftest import settings_for
from tests.backend.page.test_page import PAGE
from tests.support.browser import VIEWPORT
from tests.support.servers import serve_app

pytestmark = [pytest.mark.vllm]

ASSETS = "/playground/assets"
MODULES = sorted(p.name for p in (STATIC_DIR / "js").glob("*.js"))
CSP = SECURITY_HEADERS["Content-Security-Policy"]


def test_csp_is_strict():
    # The policy itself, so that a loosened one fails here and not only in review.
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert "unsafe" not in CSP


def assert_secured(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


def test_page_headers(backend_url):
    response = httpx.get(backend_url + PAGE, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_secured(response)
    assert '<script type="module" src="/playground/assets/js/main.js"></script>' in response.text


@pytest.mark.parametrize("name", MODULES)
def test_every_module_is_javascript(backend_url, name):
    response = httpx.get(f"{backend_url}{ASSETS}/js/{name}", timeout=30)
    assert response.status_code == 200
    # nosniff makes the browser refuse a module served with any other type.
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert_secured(response)
    assert response.text == (STATIC_DIR / "js" / name).read_text(encoding="utf-8")


def test_stylesheet(backend_url):
    response = httpx.get(f"{backend_url}{ASSETS}/activations.css", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert_secured(response)


@pytest.mark.parametrize(
    "path",
    [
        "js/nope.js",
        "activations.html",
        "activations.js",  # the old single script is gone
        "js%2F..%2F..%2Frouter.py",
        "js/main.JS",
    ],
)
def test_nothing_else_is_served(backend_url, path):
    response = httpx.get(f"{backend_url}{ASSETS}/{path}", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.browser
def test_modules_load_under_the_real_csp(browser, backend_url):
    context = browser.new_context(viewport=VIEWPORT)  # CSP enforced, unlike the page fixture
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        problems = []
        page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(backend_url + PAGE)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#health .pill-ok")
        loaded = page.evaluate(
            "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
        )
        assert (
            sorted(p.rsplit("/", 1)[1] for p in loaded if p.startswith(ASSETS + "/js/")) == MODULES
        )
        assert problems == []
    finally:
        context.close()


def test_model_field_names_the_backends_default_model_escaped(page_db, engine_url, sae_url):
    """The model field starts at what this backend runs by default (under `up`, the engine's
    served name: SmolLM2 for the readable demo), written into the HTML as text."""
    hostile = 'demo/"><script>alert(1)</script>'
    settings = settings_for(page_db, engine_url, sae_url).model_copy(
        update={"playground_default_model_id": hostile}
    )
    with serve_app(create_app(settings)) as url:
        text = httpx.get(url + PAGE, timeout=30).text
    assert "{{default_model_id}}" not in text
    assert "<script>alert(1)" not in text
    assert 'value="demo/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in text

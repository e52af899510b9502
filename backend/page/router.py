"""Serves the /playground/activations page: one HTML file, its ES modules and its stylesheet.

No build step: the files under static/ are what the browser gets, except that the HTML's
``<!-- open-graph -->`` line becomes Open Graph tags (naming the run for ``?run=<id>``) and the
model field's value the backend's default model (what the engine serves under `up`), and the
run form's bounds (``limits.run_limits``, a JSON ``<meta name="run-limits">``) from which the
page sets its fields' min/max and checks a run before sending it. The page
talks to the JSON API on the same origin, so a strict Content-Security-Policy (no inline script,
no other origin) costs nothing and backs up the page's rule of rendering user and model text as
text only.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from pathlib import Path

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from backend.activations.limits import run_limits
from backend.activations.permalink import page_url
from backend.activations.protocol import REQUEST_ID_PATTERN
from backend.db import run_reads
from backend.db.pool import connection
from backend.page.open_graph import open_graph_tags
from common.defaults import PAGE_PATH
from common.errors import NotFound, ServiceUnavailable

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HTML = STATIC_DIR / "activations.html"
OPEN_GRAPH_MARK = "<!-- open-graph -->"
DEFAULT_MODEL_MARK = "{{default_model_id}}"
RUN_LIMITS_MARK = "{{run_limits}}"
ASSETS_PREFIX = "/playground/assets"
# Only these names are served (no "..", no other folder, never the HTML); by suffix:
ASSET_NAME = re.compile(r"(?:js/)?[a-z][a-z0-9-]*\.(?:js|css)")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# The tags are a nicety: a slow or absent Postgres must not hold the page up for long.
PREVIEW_LOOKUP_TIMEOUT_S = 2.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # The files change with each deploy and are small: always revalidate.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["page"], include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(PAGE_PATH, status_code=307)


@router.get(PAGE_PATH)
async def page(request: Request, run: str | None = None) -> HTMLResponse:
    """The page; ``?run=<id>`` opens that run (in the browser) and names it in the OG tags."""
    base_url = request.app.state.settings.public_base_url or str(request.base_url)
    preview = await _prompt_preview(request, run) if run and _REQUEST_ID.fullmatch(run) else None
    if preview is None:  # no run asked for, a malformed id, an unknown run or no Postgres
        tags = open_graph_tags(page_url(base_url))
    else:
        tags = open_graph_tags(page_url(base_url, run), run, preview)
    settings = request.app.state.settings
    default_model = html.escape(settings.playground_default_model_id)
    limits = html.escape(json.dumps(run_limits(settings), separators=(",", ":")), quote=True)
    page_html = (
        PAGE_HTML.read_text(encoding="utf-8")
        .replace(OPEN_GRAPH_MARK, tags, 1)
        .replace(DEFAULT_MODEL_MARK, default_model, 1)
        .replace(RUN_LIMITS_MARK, limits, 1)
    )
    return HTMLResponse(page_html, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


async def _prompt_preview(request: Request, request_id: str) -> str | None:
    """The run's prompt preview; None when there is no such run or Postgres fails to say."""
    settings = request.app.state.settings
    try:
        async with asyncio.timeout(PREVIEW_LOOKUP_TIMEOUT_S):
            async with connection(
                request.app.state.pool, settings.playground_connect_timeout_s
            ) as conn:
                return await run_reads.get_prompt_preview(conn, request_id)
    except (ServiceUnavailable, asyncpg.PostgresError, TimeoutError) as exc:
        logger.warning("page: no Open Graph tags for run %s: %s", request_id, exc)
        return None


@router.get(ASSETS_PREFIX + "/{name:path}")
async def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not ASSET_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"no page asset named {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)

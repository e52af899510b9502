"""Serves the /playground/activations page: one HTML file, its ES modules and its stylesheet.

No build step: the files under static/ are what the browser gets. The page talks to the JSON API
on the same origin, so a strict Content-Security-Policy (no inline script, no other origin) costs
nothing and backs up the page's rule of rendering user and model text as text only.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from common.defaults import PAGE_PATH
from common.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HTML = STATIC_DIR / "activations.html"
ASSETS_PREFIX = "/playground/assets"
# Only these names are served (no "..", no other folder, never the HTML); by suffix:
ASSET_NAME = re.compile(r"(?:js/)?[a-z][a-z0-9-]*\.(?:js|css)")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
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
async def page() -> FileResponse:
    return FileResponse(PAGE_HTML, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get(ASSETS_PREFIX + "/{name:path}")
async def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not ASSET_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"no page asset named {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)

"""Serves the /playground/activations page: one static HTML file, its script and its stylesheet.

No build step: the files under static/ are what the browser gets. The page talks to the JSON API
on the same origin, so a strict Content-Security-Policy (no inline script, no other origin) costs
nothing and backs up the page's rule of rendering user and model text as text only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from common.defaults import PAGE_PATH
from common.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PREFIX = "/playground/assets"
# name -> media type; nothing else under static/ is served.
ASSETS = {
    "activations.js": "text/javascript; charset=utf-8",
    "activations.css": "text/css; charset=utf-8",
}
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
    return FileResponse(
        STATIC_DIR / "activations.html",
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


@router.get(ASSETS_PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no page asset named {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)

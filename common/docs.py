"""Swagger UI at /docs from the `swagger-ui-bundle` package's files, not a CDN: the API docs
work offline (a laptop on a train, a cluster without egress). ReDoc, which has no packaged
copy, is not served."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

from common.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# The only files served, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def serve_docs(app: FastAPI) -> None:
    """Add /docs (Swagger UI on the app's OpenAPI schema) and its packaged assets to ``app``
    (built with ``docs_url=None``)."""

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound(f"no docs asset named {name!r}")
        return FileResponse(str(swagger_ui_path / name), media_type=ASSETS[name])

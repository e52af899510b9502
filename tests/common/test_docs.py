"""/docs is Swagger UI from the packaged files: nothing on the page comes from another origin,
so it works offline; every asset it names is served."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from common.app import create_service_app


@asynccontextmanager
async def _nothing(_: FastAPI):
    yield


async def test_docs_load_only_from_this_origin():
    app = create_service_app(title="t", lifespan=_nothing, routers=[], max_body_bytes=1 << 20)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "SwaggerUIBundle" in html
        # Every src/href is a path on this origin (the stock page loads from a CDN).
        urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert not re.search(r"https?://", html.replace("http://svc", ""))
        for url in urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500, url
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs/assets/index.html")).status_code == 404
        assert (await client.get("/docs/assets/..%2Fpyproject.toml")).status_code == 404

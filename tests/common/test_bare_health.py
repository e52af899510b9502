"""GPU services' /health without the service token says only ok / down (issue 20): model
paths, devices and queue counters are for the token's holders. A real app served over HTTP
with the real middleware (common/auth.py)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from common.auth import require_token
from tests.support.servers import serve_app

DETAILS = {"status": "ok", "model_id": "/models/secret-path", "in_flight": 3}


def service(healthy: dict[str, bool]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health():
        if not healthy["ok"]:
            return JSONResponse({"status": "down", "model_id": "/models/secret-path"}, 503)
        return DETAILS

    require_token(app, SecretStr("the-token"))
    return app


def test_health_without_the_token_is_bare():
    healthy = {"ok": True}
    with serve_app(service(healthy)) as url:
        bare = httpx.get(url + "/health")
        assert (bare.status_code, bare.json()) == (200, {"status": "ok"})
        full = httpx.get(url + "/health", headers={"authorization": "Bearer the-token"})
        assert full.json() == DETAILS
        healthy["ok"] = False
        down = httpx.get(url + "/health")
        assert (down.status_code, down.json()) == (503, {"status": "down"})

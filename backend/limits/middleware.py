"""The limits as pure ASGI middleware, in front of every route of the backend (429 / 503 with
``Retry-After`` in the one error shape; the route is not called)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.limits.limiter import Limiter, route_class
from common.errors import ApiError, error_response
from common.timing import SCOPE_ADMITTED, SCOPE_ARRIVED


class LimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_ARRIVED] = time.perf_counter()
        klass = route_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        limiter: Limiter | None = getattr(scope["app"].state, "limiter", None) if klass else None
        if limiter is None or klass is None:
            await self.app(scope, receive, send)
            return
        admission = limiter.admit(limiter.client_key(scope), klass)
        try:
            await admission.__aenter__()
        except ApiError as exc:
            response = error_response(exc.status_code, exc.to_info(), headers=exc.headers)
            await response(scope, receive, send)
            return
        scope[SCOPE_ADMITTED] = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            await admission.__aexit__(None, None, None)

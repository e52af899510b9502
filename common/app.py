"""The one FastAPI app factory of the three services: orjson answers, the one error shape, the
body byte limit, (engine, SAE service) the service token, the request id and the metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.types import ASGIApp

from common.auth import require_token
from common.body_limit import limit_body
from common.docs import serve_docs
from common.errors import install_error_handlers
from common.metrics import Refresh, add_metrics_route, instrument
from common.request_id import RequestIdMiddleware
from common.responses import OrjsonResponse

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    *,
    title: str,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    max_body_bytes: int,
    token: SecretStr | None = None,
    description: str = "",
    version: str = "0.1.0",
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
    metrics: CollectorRegistry | None = None,
    metrics_token: SecretStr | None = None,
    metrics_refresh: Refresh | None = None,
) -> FastAPI:
    """A service app whose state is created by ``lifespan`` (and kept on ``app.state``).

    Bodies over ``max_body_bytes`` answer 413 unread; with a ``token``, every route but
    /health needs it (401 otherwise), checked before any body byte is read. ``middleware``
    (pure ASGI, the first listed outermost) goes outside the token check. Every answer carries
    ``X-Request-ID``. With a ``metrics`` registry (made by the caller's factory), requests are
    measured on it and ``GET /metrics`` serves it (also behind ``metrics_token`` when set)."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # served from the packaged Swagger UI below, not a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    serve_docs(app)
    for router in routers:
        app.include_router(router)
    if metrics is not None:
        add_metrics_route(app, metrics, token=metrics_token, refresh=metrics_refresh)
    # The last middleware added is the outermost.
    limit_body(app, max_body_bytes)
    require_token(app, token)
    for extra in reversed(middleware):
        app.add_middleware(extra)
    if metrics is not None:
        instrument(app, metrics)  # outside the limits: refusals are measured too
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer and log line has the id
    return app

"""The one FastAPI app factory of the three services: orjson answers, the one error shape, the
body byte limit and (engine, SAE service) the service token."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from common.auth import require_token
from common.body_limit import limit_body
from common.docs import serve_docs
from common.errors import install_error_handlers
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
) -> FastAPI:
    """A service app whose state is created by ``lifespan`` (and kept on ``app.state``).

    Bodies over ``max_body_bytes`` answer 413 unread; with a ``token``, every route but
    /health needs it (401 otherwise), checked before any body byte is read."""
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
    # The last middleware added is the outermost.
    limit_body(app, max_body_bytes)
    require_token(app, token)
    return app

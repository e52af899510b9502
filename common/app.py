"""The one FastAPI app factory of the three services: orjson answers, the one error shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI

from common.errors import install_error_handlers
from common.responses import OrjsonResponse

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    *,
    title: str,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    description: str = "",
    version: str = "0.1.0",
) -> FastAPI:
    """A service app whose state is created by ``lifespan`` (and kept on ``app.state``)."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app

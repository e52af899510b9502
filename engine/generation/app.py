"""The engine service's FastAPI app: the vLLM engine lives exactly as long as the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.auth import require_token
from common.body_limit import limit_body
from common.errors import install_error_handlers
from common.responses import OrjsonResponse
from engine.generation.api_router import router
from engine.generation.runtime import open_engine
from engine.generation.serving import GenerationService
from engine.generation.settings import EngineSettings


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    settings = settings or EngineSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_engine(settings) as engine:
            app.state.settings = settings
            app.state.generation = GenerationService.from_engine(engine, settings)
            yield

    app = FastAPI(
        title="Activations playground engine",
        description="Text generation with token IDs, on vLLM's async engine.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app)
    app.include_router(router)
    # Outermost last: the token is checked before any body byte is read.
    limit_body(app, settings.max_body_bytes)
    require_token(app, settings.api_token)
    return app

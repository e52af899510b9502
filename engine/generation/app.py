"""The engine service's FastAPI app: the vLLM engine lives exactly as long as the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app
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
            app.state.generation = await GenerationService.from_engine(engine, settings)
            yield

    return create_service_app(
        title="Activations playground engine",
        description="Text generation with token IDs, on vLLM's async engine.",
        lifespan=lifespan,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
        token=settings.api_token,
    )

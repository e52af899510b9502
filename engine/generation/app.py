"""The engine service's FastAPI app: the vLLM engine lives exactly as long as the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app
from engine.generation.api_router import router
from engine.generation.metrics import EngineMetrics
from engine.generation.runtime import open_engine
from engine.generation.serving import GenerationService
from engine.generation.settings import EngineSettings


def create_app(settings: EngineSettings | None = None) -> FastAPI:
    settings = settings or EngineSettings()
    metrics = EngineMetrics.create() if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_engine(settings) as engine:
            app.state.settings = settings
            service = await GenerationService.from_engine(engine, settings)
            app.state.generation = service
            app.state.engine_metrics = metrics
            if metrics is not None:
                from engine.generation import sampling_patch

                enabled = sampling_patch.is_installed()
                metrics.attach(
                    lambda: service.aborted,
                    lambda: service.steered,
                    sampling_patch.PLUGIN_NAME,
                    enabled,
                )
            yield

    return create_service_app(
        title="Activations playground engine",
        description="Text generation with token IDs, on vLLM's async engine.",
        lifespan=lifespan,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
        token=settings.api_token,
        metrics=metrics.registry if metrics is not None else None,
    )

"""The backend FastAPI app: product API for activations, the SAE proxy, the injection proxy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from backend.activations.api_router import router as activations_router
from backend.activations.compare_router import router as compare_router
from backend.activations.comparer import RunComparer
from backend.activations.exporter import RunExporter
from backend.activations.reads import RunReader
from backend.activations.service import ActivationService
from backend.db.pool import create_pool
from backend.features.api_router import router as features_router
from backend.features.catalog import SaeCatalog
from backend.features.explorer import FeatureExplorer
from backend.features.fold_worker import FoldWorker
from backend.features.search import LabelSearch
from backend.features.service import FeatureService
from backend.health import HealthService
from backend.injection.api_router import router as injection_router
from backend.injection.proxy import InjectionProxy
from backend.limits.limiter import Limiter
from backend.limits.middleware import LimitsMiddleware
from backend.limits.quota import StorageGuard
from backend.metrics import BackendMetrics
from backend.page.router import router as page_router
from backend.settings import Settings
from backend.upstreams import engine as engine_upstream
from backend.upstreams import sae as sae_upstream
from backend.upstreams.client import JsonUpstream, new_http_client
from common.app import create_service_app
from common.metrics import new_registry

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = new_registry() if settings.playground_metrics else None
    metrics = BackendMetrics(registry) if registry is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set (`playground backend` starts an embedded Postgres)"
            )
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings)
            stack.push_async_callback(_close_pool, pool)
            connect = settings.playground_connect_timeout_s
            # One HTTP client (connection pool) per upstream.
            engine_http = new_http_client(
                settings.playground_activations_hf_url,
                timeout=settings.playground_engine_timeout_s,
                connect_timeout=connect,
                headers=settings.upstream_headers(),
            )
            sae_http = new_http_client(
                settings.playground_sae_url,
                timeout=settings.playground_sae_timeout_s,
                connect_timeout=connect,
                headers=settings.upstream_headers(),
            )
            injection_http = new_http_client(
                "", timeout=settings.playground_injection_timeout_s, connect_timeout=connect
            )
            for client in (engine_http, sae_http, injection_http):
                stack.push_async_callback(client.aclose)

            engine = engine_upstream.EngineClient(JsonUpstream(engine_upstream.NAME, engine_http))
            sae = sae_upstream.SaeClient(JsonUpstream(sae_upstream.NAME, sae_http))
            folder = FoldWorker(
                pool, batch=settings.playground_fold_batch, idle_s=settings.playground_fold_idle_s
            )
            if settings.playground_feature_fold:
                folder.start()
                stack.push_async_callback(folder.stop)
            catalog = SaeCatalog(settings, pool, sae)
            app.state.settings = settings
            app.state.pool = pool
            app.state.metrics = metrics
            app.state.activations = ActivationService(
                settings, pool, engine, sae, on_stored=folder.poke, metrics=metrics
            )
            app.state.activations.check_sae = catalog.check_known  # sae_id/layer before generating
            app.state.runs = RunReader(settings, pool)
            app.state.compare = RunComparer(settings, pool)
            app.state.export = RunExporter(settings, pool, app.state.compare)
            app.state.health = HealthService(settings, pool, engine, sae)
            app.state.features = FeatureService(settings, sae)
            app.state.catalog = catalog
            app.state.explorer = FeatureExplorer(settings, pool, catalog, sae)
            app.state.search = LabelSearch(settings, pool)
            app.state.injection = InjectionProxy(settings, injection_http)
            limiter = Limiter(settings, pool)
            limiter.start()
            stack.push_async_callback(limiter.stop)
            app.state.limiter = limiter
            app.state.storage_guard = StorageGuard(settings, pool)
            stack.push_async_callback(_cancel, asyncio.create_task(catalog.warm()))
            yield

    app = create_service_app(
        title="Activations playground backend",
        lifespan=lifespan,
        routers=[
            compare_router,
            activations_router,
            features_router,
            injection_router,
            page_router,
            meta_router,
        ],
        max_body_bytes=settings.playground_max_body_bytes,
        # Outside the body limit: a client over its limits is answered before its body is read.
        middleware=[LimitsMiddleware],
        metrics=registry,
        metrics_token=settings.playground_metrics_token,
        metrics_refresh=metrics.refresh if metrics is not None else None,
    )
    return app


meta_router = APIRouter(tags=["meta"])


@meta_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: 200 once the app has started (its lifespan connected to Postgres)."""
    return {"status": "ok"}


async def _close_pool(pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except TimeoutError:
        logger.warning("postgres pool did not close in 10 s; terminating it")
        pool.terminate()


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""The SAE service's FastAPI app: model, tokenizer, SAE registry and batcher are created in
the lifespan and kept on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app
from common.metrics import new_registry
from engine.sae.api_router import router
from engine.sae.metrics import SaeMetrics
from engine.sae.settings import Settings

logger = logging.getLogger(__name__)


def build_service(settings: Settings):
    """Load everything once (blocking; call from a thread)."""
    from transformers import AutoTokenizer

    from engine.sae.batching import Batcher
    from engine.sae.registry import SaeRegistry
    from engine.sae.residual import ResidualModel, resolve_device_dtype
    from engine.sae.serving import SaeService
    from engine.sae.stream_cache import StreamCaches
    from engine.sae.tokens import TokenTable

    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    device, dtype = resolve_device_dtype(settings.device, settings.dtype)
    registry = SaeRegistry(
        settings.sae_dirs,
        max_loaded=settings.max_loaded_saes,
        device=device,
        dtype=dtype,
        labels_filename=settings.labels_filename,
        examples_filename=settings.examples_filename,
    )
    deepest = max(layer for _, layer in registry.entries)
    keep = deepest + 1 if settings.drop_unused_layers else None
    model = ResidualModel.load(settings.model, device=device, dtype=dtype, keep_layers=keep)
    for meta in registry.entries.values():
        if meta.d_in != model.d_model or meta.layer >= model.n_layers:
            raise ValueError(
                f"SAE {meta.sae_id} (d_in {meta.d_in}, layer {meta.layer}) does not fit the "
                f"model (hidden {model.d_model}, {model.n_layers} layers)"
            )
    registry.encoder(registry.entries[registry.default])  # ready before /health says so
    tokenizer = AutoTokenizer.from_pretrained(settings.model, local_files_only=True)
    batcher = Batcher(
        model,
        registry,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        wait_ms=settings.batch_wait_ms,
        chunk_tokens=settings.encode_chunk_tokens,
        max_padding=settings.max_padding_ratio,
        max_queued=settings.max_queued_jobs,
        caches=StreamCaches(
            max_streams=settings.stream_cache_max_streams,
            max_bytes=settings.stream_cache_max_bytes,
            idle_s=settings.stream_cache_idle_s,
        ),
    )
    logger.info("SAE service ready: %s on %s/%s", settings.served_model_id, device, dtype)
    return SaeService(settings, model, TokenTable(tokenizer), registry, batcher)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = SaeMetrics(new_registry()) if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = await asyncio.to_thread(build_service, settings)
        if metrics is not None:
            service.metrics = metrics
            metrics.attach(service.batcher)
        service.batcher.start()
        app.state.sae_service = service
        try:
            yield
        finally:
            await service.batcher.stop()

    return create_service_app(
        title="SAE service",
        lifespan=lifespan,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
        token=settings.api_token,
        metrics=metrics.registry if metrics is not None else None,
    )

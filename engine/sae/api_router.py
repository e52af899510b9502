"""HTTP routes of the SAE service: parse, call the service, answer."""

from __future__ import annotations

import asyncio
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from common.disconnect import ClientDisconnected, cancel_on_disconnect
from common.errors import ERROR_RESPONSES
from common.responses import OrjsonResponse
from engine.sae.protocol import (
    MAX_FEATURE_ID_ON_WIRE,
    AnalyzeRequest,
    AnalyzeResponse,
    ExtractRequest,
    ExtractResponse,
    FeatureResponse,
    HealthResponse,
    LabelsResponse,
    SaesResponse,
    SteeringVectorsRequest,
    SteeringVectorsResponse,
    StreamCacheHealth,
)
from engine.sae.serving import SaeService

router = APIRouter(tags=["sae"])

# nginx's "client closed request": nobody reads it, but logs show why the request ended.
CLIENT_CLOSED = 499


async def get_service(request: Request) -> SaeService:
    return request.app.state.sae_service


ServiceDep = Annotated[SaeService, Depends(get_service)]
SaeIdPath = Annotated[str, Path(min_length=1, max_length=200)]
LayerPath = Annotated[int, Path(ge=0, le=1000)]
FeatureIdPath = Annotated[int, Path(ge=0, le=MAX_FEATURE_ID_ON_WIRE)]


@router.post("/extract_features", response_model=ExtractResponse, responses=ERROR_RESPONSES)
async def extract_features(body: ExtractRequest, request: Request, service: ServiceDep):
    # Returned as-is (already wire-shaped): re-validating thousands of entries costs more
    # than computing them. A caller that leaves takes its queued job with it.
    try:
        return OrjsonResponse(await cancel_on_disconnect(request, service.extract(body)))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


@router.post("/analyze_features", response_model=AnalyzeResponse, responses=ERROR_RESPONSES)
async def analyze_features(body: AnalyzeRequest, request: Request, service: ServiceDep):
    try:
        return OrjsonResponse(await cancel_on_disconnect(request, service.analyze(body)))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


@router.post("/steering_vectors", response_model=SteeringVectorsResponse, responses=ERROR_RESPONSES)
async def steering_vectors(
    body: SteeringVectorsRequest, service: ServiceDep
) -> SteeringVectorsResponse:
    """Decoder rows in the model's residual units, to add with the engine's ``steer``."""
    return await asyncio.to_thread(service.steering_vectors, body)


@router.get("/saes", response_model=SaesResponse)
async def list_saes(service: ServiceDep) -> SaesResponse:
    return service.saes()


@router.get(
    "/features/{sae_id}/{layer}/{feature_id}",
    response_model=FeatureResponse,
    responses=ERROR_RESPONSES,
)
async def feature(
    sae_id: SaeIdPath, layer: LayerPath, feature_id: FeatureIdPath, service: ServiceDep
) -> FeatureResponse:
    """A feature's label and max-activating examples (from the SAE folder)."""
    return await asyncio.to_thread(service.feature, sae_id, layer, feature_id)


@router.get(
    "/saes/{sae_id}/{layer}/labels", response_model=LabelsResponse, responses=ERROR_RESPONSES
)
async def labels(sae_id: SaeIdPath, layer: LayerPath, service: ServiceDep) -> LabelsResponse:
    """Every label of one SAE in one answer (the backend caches them)."""
    return await asyncio.to_thread(service.labels, sae_id, layer)


@router.get("/health", response_model=HealthResponse)
async def health(service: ServiceDep) -> HealthResponse:
    caches = service.batcher.caches
    return HealthResponse(
        status="ok",
        model_id=service.model_id,
        device=str(service.model.device),
        dtype=str(service.model.dtype).removeprefix("torch."),
        loaded_saes=service.loaded(),
        torch_threads=torch.get_num_threads(),
        queued_jobs=service.batcher.queued(),
        jobs_dropped=service.batcher.jobs_dropped,
        work_positions=service.batcher.work_positions,
        stream_caches=StreamCacheHealth(
            streams=len(caches),
            bytes=caches.nbytes,
            hits=caches.stats.hits,
            misses=caches.stats.misses,
            evicted=caches.stats.evicted,
        ),
    )

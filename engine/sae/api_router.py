"""HTTP routes of the SAE service: parse, call the service, answer."""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Request

from common.errors import ERROR_RESPONSES
from common.responses import OrjsonResponse
from engine.sae.protocol import (
    AnalyzeRequest,
    AnalyzeResponse,
    ExtractRequest,
    ExtractResponse,
    HealthResponse,
    SaesResponse,
)
from engine.sae.serving import SaeService

router = APIRouter(tags=["sae"])


def get_service(request: Request) -> SaeService:
    return request.app.state.sae_service


ServiceDep = Annotated[SaeService, Depends(get_service)]


@router.post("/extract_features", response_model=ExtractResponse, responses=ERROR_RESPONSES)
async def extract_features(body: ExtractRequest, service: ServiceDep):
    # Returned as-is (already wire-shaped): re-validating thousands of entries costs more
    # than computing them.
    return OrjsonResponse(await service.extract(body))


@router.post("/analyze_features", response_model=AnalyzeResponse, responses=ERROR_RESPONSES)
async def analyze_features(body: AnalyzeRequest, service: ServiceDep):
    return OrjsonResponse(await service.analyze(body))


@router.get("/saes", response_model=SaesResponse)
async def list_saes(service: ServiceDep) -> SaesResponse:
    return service.saes()


@router.get("/health", response_model=HealthResponse)
async def health(service: ServiceDep) -> HealthResponse:
    return HealthResponse(
        status="ok",
        model_id=service.model_id,
        device=str(service.model.device),
        dtype=str(service.model.dtype).removeprefix("torch."),
        loaded_saes=service.loaded(),
        torch_threads=torch.get_num_threads(),
    )

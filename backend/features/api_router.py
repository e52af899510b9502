"""Routes of /playground/features: the SAE service, proxied with the run path's client."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.deps import FeaturesDep
from backend.features.protocol import (
    AnalyzeFeaturesRequest,
    ExtractFeaturesRequest,
    ExtractFeaturesResponse,
)
from backend.upstreams.sae import SaeList
from common.errors import ERROR_RESPONSES
from common.responses import OrjsonResponse

router = APIRouter(prefix="/playground/features", tags=["features"])


@router.post("/extract", response_model=ExtractFeaturesResponse, responses=ERROR_RESPONSES)
async def extract(body: ExtractFeaturesRequest, service: FeaturesDep):
    """Per-position top-k SAE features of a token sequence."""
    return OrjsonResponse(await service.extract(body))


@router.post("/analyze", response_model=dict[str, Any], responses=ERROR_RESPONSES)
async def analyze(body: AnalyzeFeaturesRequest, service: FeaturesDep):
    """Chosen features' activations at every position (the SAE service's answer)."""
    return OrjsonResponse(await service.analyze(body))


@router.get("/saes", response_model=SaeList, responses=ERROR_RESPONSES)
async def saes(service: FeaturesDep):
    """The SAEs the SAE service can serve, and its default."""
    return OrjsonResponse(await service.list_saes())

"""Routes of /playground/features: the SAE service, proxied with the run path's client, and
the feature explorer (a feature's page, label search, an SAE's cached labels)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from backend.activations.protocol import MAX_SAE_LAYER, SAE_ID_PATTERN
from backend.features.catalog import SaeCatalog
from backend.features.explorer import FeatureExplorer
from backend.features.protocol import (
    MAX_FEATURE_ID,
    MAX_LABEL_IDS,
    MAX_QUERY_CHARS,
    MAX_SEARCH_RESULTS,
    MAX_TOP_RUNS,
    AnalyzeFeaturesRequest,
    ExtractFeaturesRequest,
    ExtractFeaturesResponse,
    FeatureResponse,
    LabelsResponse,
    SearchResponse,
)
from backend.features.search import LabelSearch
from backend.features.service import FeatureService
from backend.upstreams.sae import SaeList
from common.errors import ERROR_RESPONSES
from common.responses import OrjsonResponse

router = APIRouter(prefix="/playground/features", tags=["features"])


async def get_features(request: Request) -> FeatureService:
    return request.app.state.features


async def get_catalog(request: Request) -> SaeCatalog:
    return request.app.state.catalog


async def get_explorer(request: Request) -> FeatureExplorer:
    return request.app.state.explorer


async def get_search(request: Request) -> LabelSearch:
    return request.app.state.search


# The services the lifespan put on app.state, as this router's handlers take them.
FeaturesDep = Annotated[FeatureService, Depends(get_features)]
CatalogDep = Annotated[SaeCatalog, Depends(get_catalog)]
ExplorerDep = Annotated[FeatureExplorer, Depends(get_explorer)]
SearchDep = Annotated[LabelSearch, Depends(get_search)]


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


SaeIdPath = Annotated[str, Path(pattern=SAE_ID_PATTERN, max_length=200)]
LayerPath = Annotated[int, Path(ge=0, le=MAX_SAE_LAYER)]


@router.get("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(
    service: SearchDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    sae_id: Annotated[str | None, Query(pattern=SAE_ID_PATTERN, max_length=200)] = None,
    layer: Annotated[int | None, Query(ge=0, le=MAX_SAE_LAYER)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
):
    """Features whose cached label has every word of ``q`` as a prefix (a number also finds
    that feature id); most-fired first."""
    return OrjsonResponse(await service.search(q, sae_id, layer, limit))


@router.get(
    "/{sae_id:path}/{layer}/labels", response_model=LabelsResponse, responses=ERROR_RESPONSES
)
async def labels(
    sae_id: SaeIdPath,
    layer: LayerPath,
    service: CatalogDep,
    ids: Annotated[
        str | None, Query(max_length=MAX_LABEL_IDS * 11, pattern=r"^\d{1,10}(,\d{1,10})*$")
    ] = None,
):
    """The SAE's cached labels (all, or the comma-separated ``ids``); no SAE-service call once
    cached."""
    wanted = [int(i) for i in ids.split(",")][:MAX_LABEL_IDS] if ids else None
    return OrjsonResponse(await service.labels_view(sae_id, layer, wanted))


@router.get(
    "/{sae_id:path}/{layer}/{feature_id}",
    response_model=FeatureResponse,
    responses=ERROR_RESPONSES,
)
async def feature(
    sae_id: SaeIdPath,
    layer: LayerPath,
    feature_id: Annotated[int, Path(ge=0, le=MAX_FEATURE_ID)],
    service: ExplorerDep,
    top: Annotated[int, Query(ge=1, le=MAX_TOP_RUNS)] = 10,
):
    """One feature across the stored runs: label, density, histogram, top runs with a token
    window each, the SAE's examples, links. 404 unknown SAE; 422 ``feature_id >= d_sae``."""
    return OrjsonResponse(await service.feature(sae_id, layer, feature_id, top))

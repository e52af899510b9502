"""Routes of /playground/activations: parse, call the service, answer JSON.

Handlers return OrjsonResponse directly: the services build TypedDicts (timelines embedded as
already-serialised JSON), so FastAPI's re-validation through the response model is skipped;
the models document the schema and the tests validate every answer against them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query

from backend.activations.derive import RowFilter
from backend.activations.protocol import (
    MAX_PAGE,
    MAX_POSITION,
    MAX_SAE_TOP_K,
    REQUEST_ID_PATTERN,
    ActivationRunRequest,
    ActivationRunResponse,
    HealthResponse,
    RowsResponse,
    RunsPage,
    SummaryResponse,
    TopFeaturesResponse,
)
from backend.deps import ActivationsDep, HealthDep, PublicBaseDep, RunsDep
from common import sse
from common.errors import ERROR_RESPONSES, NotImplementedYet
from common.responses import OrjsonResponse

router = APIRouter(prefix="/playground/activations", tags=["activations"])

RequestId = Annotated[str, Path(pattern=REQUEST_ID_PATTERN, max_length=128)]
SegmentQ = Annotated[Literal["all", "prompt", "output"], Query()]
MAX_FEATURE_ID = 2**31 - 1


STREAM_RESPONSE = {
    200: {
        "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "with `Accept: text/event-stream`: events `started`, `token` ..., "
        "`features` ..., then `done` (ActivationRunResponse) or `error` (ErrorResponse)",
    }
}


@router.post(
    "/run",
    response_model=ActivationRunResponse,
    responses={**ERROR_RESPONSES, **STREAM_RESPONSE},
)
async def run(
    body: ActivationRunRequest,
    service: ActivationsDep,
    base_url: PublicBaseDep,
    accept: Annotated[str | None, Header()] = None,
):
    """Generate with the engine, extract SAE features on the full sequence, store, answer;
    streamed as events when the client accepts ``text/event-stream``."""
    if sse.wants_events(accept):
        return sse.event_stream(await service.open_stream(body, base_url))
    return OrjsonResponse(await service.run(body, base_url))


@router.get("/runs", response_model=RunsPage, responses=ERROR_RESPONSES)
async def runs(
    service: RunsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[Literal["ok", "failed"] | None, Query()] = None,
):
    """Recent runs, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    return OrjsonResponse(await service.list_runs(limit=limit, cursor=cursor, status=status))


@router.get("/summary", response_model=SummaryResponse, responses=ERROR_RESPONSES)
async def summary(service: RunsDep):
    return OrjsonResponse(await service.summary())


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(service: HealthDep):
    """Postgres, engine and SAE service: 200 (``ok``/``degraded``), 503 when Postgres is down."""
    report = await service.check()
    return OrjsonResponse(report.body, status_code=report.status_code)


@router.get("/{request_id}", response_model=ActivationRunResponse, responses=ERROR_RESPONSES)
async def get_run(request_id: RequestId, service: RunsDep, base_url: PublicBaseDep):
    """The stored run; 404 unknown, 410 when its preview was pruned."""
    return OrjsonResponse(await service.get_run(request_id, base_url))


@router.get("/{request_id}/rows", response_model=RowsResponse, responses=ERROR_RESPONSES)
async def rows(
    request_id: RequestId,
    service: RunsDep,
    feature_id: Annotated[int | None, Query(ge=0, le=MAX_FEATURE_ID)] = None,
    token_start: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None,
    token_end: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None,
    rank_max: Annotated[int | None, Query(ge=1, le=MAX_SAE_TOP_K)] = None,
    segment: SegmentQ = "all",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
):
    """Rows (position x feature) derived from the stored timeline; positions in [start, end)."""
    flt = RowFilter(feature_id, token_start, token_end, rank_max, segment, limit, offset)
    return OrjsonResponse(await service.rows(request_id, flt))


@router.get(
    "/{request_id}/top-features", response_model=TopFeaturesResponse, responses=ERROR_RESPONSES
)
async def top_features(
    request_id: RequestId,
    service: RunsDep,
    segment: SegmentQ = "all",
    include_special: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
):
    """Per feature max/mean activation and hits; special tokens left out unless asked."""
    result = await service.top_features(
        request_id, segment=segment, include_special=include_special, limit=limit
    )
    return OrjsonResponse(result)


@router.get("/{request_id}/feature-deltas", responses=ERROR_RESPONSES)
async def feature_deltas(request_id: RequestId):
    """Not built yet (spec: deferred); always 501."""
    raise NotImplementedYet("feature deltas are not implemented yet")

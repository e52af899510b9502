"""Routes of /playground/activations: parse, call the service, answer JSON.

Handlers return OrjsonResponse directly: the services build TypedDicts (timelines embedded as
already-serialised JSON), so FastAPI's re-validation through the response model is skipped;
the models document the schema and the tests validate every answer against them.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from backend.activations.departure import ClientLeft, unless_client_leaves
from backend.activations.derive import RowFilter
from backend.activations.protocol import (
    MAX_PAGE,
    MAX_POSITION,
    MAX_SAE_LAYER,
    MAX_SAE_TOP_K,
    REQUEST_ID_PATTERN,
    SAE_ID_PATTERN,
    ActivationRunRequest,
    ActivationRunResponse,
    HealthResponse,
    RowsResponse,
    RunsPage,
    SummaryResponse,
    TopFeaturesResponse,
)
from backend.activations.reads import RunReader
from backend.activations.service import ActivationService
from backend.activations.stages import clock_for
from backend.deps import PublicBaseDep
from backend.features.explorer import FeatureExplorer
from backend.health import HealthService
from backend.limits.extra import ExtraRuns
from common import sse
from common.errors import ERROR_RESPONSES, InvalidRequest, NotImplementedYet
from common.responses import OrjsonResponse

router = APIRouter(prefix="/playground/activations", tags=["activations"])


async def get_activations(request: Request) -> ActivationService:
    return request.app.state.activations


async def get_runs(request: Request) -> RunReader:
    return request.app.state.runs


async def get_health(request: Request) -> HealthService:
    return request.app.state.health


async def get_explorer(request: Request) -> FeatureExplorer:
    return request.app.state.explorer


# The services the lifespan put on app.state, as this router's handlers take them.
ActivationsDep = Annotated[ActivationService, Depends(get_activations)]
RunsDep = Annotated[RunReader, Depends(get_runs)]
HealthDep = Annotated[HealthService, Depends(get_health)]
ExplorerDep = Annotated[FeatureExplorer, Depends(get_explorer)]

RequestId = Annotated[str, Path(pattern=REQUEST_ID_PATTERN, max_length=128)]
# X-Run-Owner: the owner token a run's creating answer gave.
OwnerToken = Annotated[
    str | None, Header(alias="X-Run-Owner", min_length=1, max_length=128, pattern=r"^[\w\-]+$")
]
OWNED_RESPONSES = {**ERROR_RESPONSES, 409: ERROR_RESPONSES[404]}
SegmentQ = Annotated[Literal["all", "prompt", "output"], Query()]
MAX_FEATURE_ID = 2**31 - 1


STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "with `Accept: text/event-stream`: events `started` (with the new run's "
        "`owner_token`), `token` ..., `features` ..., then `done` (ActivationRunResponse) or "
        "`error` (ErrorResponse)",
    }
}


@router.post(
    "/run",
    response_model=ActivationRunResponse,
    responses={**OWNED_RESPONSES, **STREAM_RESPONSE},
)
async def run(
    body: ActivationRunRequest,
    request: Request,
    service: ActivationsDep,
    base_url: PublicBaseDep,
    owner: OwnerToken = None,
    accept: Annotated[str | None, Header()] = None,
):
    """Claim the id, generate with the engine, extract SAE features on the full sequence, store,
    answer. A new run's answer carries its ``owner_token`` (once); an existing id needs it as
    ``X-Run-Owner`` (409 ``run_owned`` otherwise, before any upstream call). Streamed as events
    when the client accepts ``text/event-stream`` (the token in ``started``)."""
    # A steered run's default is a second run: admitted (limits) as one.
    extra = ExtraRuns(request, 1 if body.steer and body.compare else 0)
    async with AsyncExitStack() as held:
        await held.enter_async_context(extra)
        if sse.wants_events(accept):
            clock = clock_for(request.scope, request.headers)
            if clock is not None:
                clock.mark("route")
            frames = await service.open_stream(body, base_url, owner, clock)
            held.pop_all()  # the stream holds them now
            return sse.event_stream(extra.around(frames))
        try:  # a client that leaves cancels its run (the engine aborts it)
            view = await unless_client_leaves(request, service.run(body, base_url, owner))
        except ClientLeft:
            return Response(status_code=499)  # nobody reads it; the server drops it
        return OrjsonResponse(view)


MAX_FEATURE_PAGE = 100


@router.get("/runs", response_model=RunsPage, responses=ERROR_RESPONSES)
async def runs(
    service: RunsDep,
    explorer: ExplorerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[Literal["ok", "failed", "stopped"] | None, Query()] = None,
    sae_id: Annotated[str | None, Query(pattern=SAE_ID_PATTERN, max_length=200)] = None,
    sae_layer: Annotated[int | None, Query(ge=0, le=MAX_SAE_LAYER)] = None,
    feature_id: Annotated[int | None, Query(ge=0, le=MAX_FEATURE_ID)] = None,
):
    """Recent runs, newest first; with ``sae_id``, ``sae_layer`` and ``feature_id`` (all three,
    ``limit`` up to 100) the runs that feature fired in, by its max activation. Pass
    ``next_cursor`` back as ``cursor`` for the next page."""
    if sae_id is None and sae_layer is None and feature_id is None:
        return OrjsonResponse(await service.list_runs(limit=limit, cursor=cursor, status=status))
    if sae_id is None or sae_layer is None or feature_id is None or status is not None:
        raise InvalidRequest(
            "filter by a feature with sae_id, sae_layer and feature_id (no status)"
        )
    if limit > MAX_FEATURE_PAGE:
        raise InvalidRequest(f"limit: at most {MAX_FEATURE_PAGE} when filtering by a feature")
    return OrjsonResponse(await explorer.runs(sae_id, sae_layer, feature_id, limit, cursor))


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
    # A run with a timeline (up to PLAYGROUND_MAX_TIMELINE_BYTES) is streamed: the stored
    # timeline JSON is written as fetched between the parts of its envelope, never copied into
    # one answer (the same bytes as one OrjsonResponse; json_parts.py).
    read = await service.get_run(request_id, base_url)
    if read.timeline_json is None:
        return OrjsonResponse(read.view)
    return StreamingResponse(read.chunks(), media_type=OrjsonResponse.media_type)


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


@router.delete("/{request_id}", status_code=204, responses=OWNED_RESPONSES)
async def delete_run(request_id: RequestId, service: ActivationsDep, owner: OwnerToken = None):
    """The owner removes their run (``X-Run-Owner``): gone from listings, reads answer 404."""
    await service.delete(request_id, owner)
    return Response(status_code=204)


@router.get("/{request_id}/feature-deltas", responses=ERROR_RESPONSES)
async def feature_deltas(request_id: RequestId):
    """Not built yet (spec: deferred); always 501."""
    raise NotImplementedYet("feature deltas are not implemented yet")

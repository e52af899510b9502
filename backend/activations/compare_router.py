"""Routes comparing two runs and exporting runs: parse, call the service, answer JSON or a
streamed download. Mounted before the activations router (``/compare`` is not a run id)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from backend.activations import export
from backend.activations.compare_protocol import MAX_THRESHOLD, CompareResponse
from backend.activations.comparer import CompareQuery, RunComparer
from backend.activations.exporter import Download, RunExporter
from backend.activations.protocol import MAX_PAGE, REQUEST_ID_PATTERN
from backend.deps import PublicBaseDep
from common.errors import ERROR_RESPONSES
from common.responses import OrjsonResponse

router = APIRouter(prefix="/playground/activations", tags=["activations"])

RunQ = Annotated[str, Query(pattern=REQUEST_ID_PATTERN, max_length=128)]
SegmentQ = Annotated[Literal["all", "prompt", "output"], Query()]
ThresholdQ = Annotated[float, Query(ge=0, le=MAX_THRESHOLD)]


async def get_compare(request: Request) -> RunComparer:
    return request.app.state.compare


async def get_export(request: Request) -> RunExporter:
    return request.app.state.export


# The services the lifespan put on app.state, as this router's handlers take them.
CompareDep = Annotated[RunComparer, Depends(get_compare)]
ExportDep = Annotated[RunExporter, Depends(get_export)]


def _download_doc(*media_types: str) -> dict[int | str, dict[str, Any]]:
    content = {m: {"schema": {"type": "string"}} for m in media_types}
    return {
        200: {"content": content, "description": "a streamed download (Content-Disposition)"},
        **ERROR_RESPONSES,
    }


def _streamed(download: Download) -> StreamingResponse:
    return StreamingResponse(
        download.chunks,
        media_type=download.media_type,
        headers={"Content-Disposition": export.content_disposition(download.filename)},
    )


@router.get("/compare", response_model=CompareResponse, responses=ERROR_RESPONSES)
async def compare(
    a: RunQ,
    b: RunQ,
    service: CompareDep,
    segment: SegmentQ = "all",
    include_special: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    threshold: ThresholdQ = 1.0,
):
    """Two runs of one SAE and layer, feature by feature (by the largest absolute change), and
    their tokens aligned with the feature changes at aligned positions. 422 ``not_comparable``
    when the SAE or layer differ; 404/410 for an unknown or pruned run."""
    q = CompareQuery(a, b, segment, include_special, limit, threshold)
    return OrjsonResponse(await service.compare(q))


@router.get(
    "/compare/export", response_class=StreamingResponse, responses=_download_doc("text/csv")
)
async def compare_export(
    a: RunQ,
    b: RunQ,
    service: ExportDep,
    segment: SegmentQ = "all",
    include_special: bool = False,
):
    """Every feature of the comparison as CSV (the ``features`` of ``/compare``, unlimited)."""
    q = CompareQuery(a, b, segment, include_special, limit=None)
    return _streamed(await service.comparison(q))


@router.get(
    "/{request_id}/export",
    response_class=StreamingResponse,
    responses=_download_doc("application/json", "text/csv"),
)
async def export_run(
    request_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN, max_length=128)],
    service: ExportDep,
    base_url: PublicBaseDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
):
    """The run as a download: JSON (the run read, its top features, every row) or CSV (one line
    per position and feature, with a header)."""
    return _streamed(await service.run(request_id, format, base_url))

"""Answers of the activations API, shaped from a run record (the POST) or from stored rows
(reads), as the TypedDicts of ``results.py``; stored timelines are embedded as
already-serialised JSON (``orjson.Fragment``), never re-parsed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import asyncpg
import orjson

from backend.activations import derive, packed
from backend.activations.json_parts import SLOT
from backend.activations.permalink import page_url
from backend.activations.record import KEEPS_OUTPUT, RunRecord, RunStatus, RunTimings
from backend.activations.results import (
    ErrorView,
    OutputView,
    PreviewView,
    RowsView,
    RunSummaryView,
    RunView,
    SummaryView,
    TimingsView,
    TopFeaturesView,
)

PREVIEW_TOP_FEATURES = 20


def timings_view(timings: RunTimings) -> TimingsView:
    return {
        "engine": timings.engine,
        "sae": timings.sae,
        "db": timings.db,
        "total": timings.total,
    }


def preview_view(
    sae_id: str,
    sae_layer: int,
    sae_top_k: int,
    timeline_json: bytes | str,
    timeline: packed.Timeline,
    *,
    slot: bool = False,
) -> PreviewView:
    """``slot``: the timeline's place is ``json_parts.SLOT``, for the caller to stream
    ``timeline_json`` into (``json_parts.around``)."""
    return {
        "sae_id": sae_id,
        "sae_layer": sae_layer,
        "sae_top_k": sae_top_k,
        "feature_timeline": SLOT if slot else orjson.Fragment(timeline_json),
        "top_features": derive.top_features(timeline, limit=PREVIEW_TOP_FEATURES),
        "row_count": timeline.n_features,
    }


def _run_view(
    *,
    public_base_url: str,
    request_id: str,
    created_at: datetime,
    status: RunStatus,
    model_id: str,
    prompt: str,
    output: OutputView | None,
    preview: PreviewView | None,
    error: ErrorView | None,
    timings: TimingsView,
    trace_id: str | None,
) -> RunView:
    return {
        "request_id": request_id,
        "permalink": page_url(public_base_url, request_id),
        "created_at": created_at,
        "status": status,
        "model_id": model_id,
        "prompt": prompt,
        "output": output,
        "preview": preview,
        "error": error,
        "events": [],
        "actions": [],
        "timings_ms": timings,
        "steering": None,
        "pair": None,
        "trace_id": trace_id,
    }


def run_view(record: RunRecord, public_base_url: str) -> RunView:
    """The POST's answer for the run it just stored."""
    gen, ext, failure = record.generation, record.extraction, record.failure
    return _run_view(
        public_base_url=public_base_url,
        request_id=record.request_id,
        created_at=record.created_at,
        status=record.status,
        model_id=record.model_id,
        prompt=record.prompt,
        output=(
            {
                "text": gen.output_text,
                "token_ids": gen.output_token_ids,
                "prompt_token_ids": gen.prompt_token_ids,
                "finish_reason": gen.finish_reason,
            }
            if gen is not None and record.status in KEEPS_OUTPUT
            else None
        ),
        preview=(
            preview_view(ext.sae_id, ext.sae_layer, ext.sae_top_k, ext.timeline_json, ext.timeline)
            if ext is not None
            else None
        ),
        error=(
            {"code": failure.code, "message": failure.message, "upstream": failure.upstream}
            if failure is not None
            else None
        ),
        timings=timings_view(record.timings),
        trace_id=record.trace_id,
    )


def _stored_timings(row: asyncpg.Record) -> TimingsView:
    return timings_view(RunTimings(row["engine_ms"], row["sae_ms"], row["total_ms"]))


def stored_error(row: asyncpg.Record) -> ErrorView | None:
    if row["error_code"] is None:
        return None
    return {
        "code": row["error_code"],
        "message": row["error_message"] or "",
        "upstream": row["error_upstream"],
    }


def failed_run_view(row: asyncpg.Record, public_base_url: str) -> RunView:
    """A stored failure (or a run stopped before it had an answer): no output, the prompt's
    stored preview, the error."""
    return _run_view(
        public_base_url=public_base_url,
        request_id=row["request_id"],
        created_at=row["created_at"],
        status=row["status"],
        model_id=row["model_id"],
        prompt=row["prompt_preview"],
        output=None,
        preview=None,
        error=stored_error(row),
        timings=_stored_timings(row),
        trace_id=row["trace_id"],
    )


def stored_run_view(
    row: asyncpg.Record,
    timeline: packed.Timeline | None,
    public_base_url: str,
    *,
    slot: bool = False,
) -> RunView:
    """A stored successful (or stopped) run, its preview derived from ``timeline`` when it
    has one; a stopped run also names why it ended (``client_closed``). ``slot``: the stored
    timeline JSON (``row["feature_timeline"]``) is not embedded, its place is
    ``json_parts.SLOT`` (streamed reads)."""
    preview = None
    if timeline is not None:
        preview = preview_view(
            row["p_sae_id"],
            row["p_sae_layer"],
            row["p_sae_top_k"],
            row["feature_timeline"],
            timeline,
            slot=slot,
        )
    return _run_view(
        public_base_url=public_base_url,
        request_id=row["request_id"],
        created_at=row["created_at"],
        status=row["status"],
        model_id=row["model_id"],
        prompt=row["prompt"],
        output={
            "text": row["output_text"],
            "token_ids": row["output_token_ids"],
            "prompt_token_ids": row["prompt_token_ids"],
            "finish_reason": row["p_finish_reason"],
        },
        preview=preview,
        error=stored_error(row),
        timings=_stored_timings(row),
        trace_id=row["trace_id"],
    )


def rows_view(
    request_id: str, total: int, rows: list[dict[str, Any]], flt: derive.RowFilter
) -> RowsView:
    return {
        "request_id": request_id,
        "total": total,
        "limit": flt.limit,
        "offset": flt.offset,
        "rows": rows,
    }


def top_features_view(
    request_id: str,
    segment: derive.Segment,
    include_special: bool,
    features: list[dict[str, Any]],
) -> TopFeaturesView:
    return {
        "request_id": request_id,
        "segment": segment,
        "include_special": include_special,
        "top_features": features,
    }


def run_summary_view(row: asyncpg.Record) -> RunSummaryView:
    return {
        "request_id": row["request_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "model_id": row["model_id"] or "",
        "prompt_preview": row["prompt_preview"] or "",
        "status": row["status"],
        "error": stored_error(row),
        "prompt_tokens": row["prompt_tokens"],
        "output_tokens": row["output_tokens"],
        "finish_reason": row["finish_reason"],
        "sae_id": row["sae_id"],
        "sae_layer": row["sae_layer"],
        "sae_top_k": row["sae_top_k"],
        "has_preview": row["has_preview"],
        "pruned": row["pruned_at"] is not None,
        "timings_ms": _stored_timings(row),
    }


def summary_view(counts: asyncpg.Record, models: list[asyncpg.Record]) -> SummaryView:
    """The summary statement's columns are the answer's fields, by name (run_reads.SUMMARY_SQL)."""
    by_model = [{"model_id": m["model_id"], "runs": m["runs"]} for m in models]
    return cast(SummaryView, dict(counts) | {"models": by_model})

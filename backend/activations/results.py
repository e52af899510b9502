"""The typed results of the activations services: each TypedDict mirrors its response model
in ``protocol.py`` (the tests validate every answer against those models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

import orjson

from backend.activations import derive
from backend.activations.record import RunStatus


class TimingsView(TypedDict):
    engine: float | None
    sae: float | None
    db: float | None
    total: float | None


class ErrorView(TypedDict):
    code: str
    message: str
    upstream: str | None


class OutputView(TypedDict):
    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None


class PreviewView(TypedDict):
    sae_id: str
    sae_layer: int
    sae_top_k: int
    feature_timeline: orjson.Fragment
    top_features: list[dict[str, Any]]
    row_count: int


class RunView(TypedDict):
    request_id: str
    permalink: str
    created_at: datetime
    status: RunStatus
    model_id: str
    prompt: str
    output: OutputView | None
    preview: PreviewView | None
    error: ErrorView | None
    events: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    timings_ms: TimingsView
    trace_id: str | None
    owner_token: NotRequired[str | None]  # the creating POST's answer only
    steering: dict[str, Any] | None  # steer_protocol.Steering
    pair: dict[str, Any] | None  # steer_protocol.PairRef


class RowsView(TypedDict):
    request_id: str
    total: int
    limit: int
    offset: int
    rows: list[dict[str, Any]]


class TopFeaturesView(TypedDict):
    request_id: str
    segment: derive.Segment
    include_special: bool
    top_features: list[dict[str, Any]]


class RunSummaryView(TypedDict):
    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt_preview: str
    status: RunStatus
    error: ErrorView | None
    prompt_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    has_preview: bool
    pruned: bool
    timings_ms: TimingsView


class RunsPageView(TypedDict):
    runs: list[RunSummaryView]
    next_cursor: str | None


class SummaryView(TypedDict):
    # SummaryResponse's fields; all but ``models`` are run_reads.SUMMARY_SQL's columns, by name.
    total_runs: int
    ok_runs: int
    failed_runs: int
    with_preview: int
    pruned_runs: int
    runs_last_24h: int
    first_run_at: datetime | None
    last_run_at: datetime | None
    models: list[dict[str, Any]]

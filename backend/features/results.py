"""The typed results of the feature explorer: each TypedDict mirrors its response model in
``protocol.py`` (the tests validate every answer against those models)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

import orjson

from backend.activations.results import RunSummaryView


class WindowView(TypedDict):
    position: int
    token: str | None
    activation: float | None


class TopRunView(TypedDict):
    request_id: str
    created_at: datetime | None
    prompt_preview: str
    max_activation: float
    max_position: int
    window: list[WindowView]


class DensityView(TypedDict):
    runs_fired: int
    runs_total: int
    positions_fired: int
    positions_total: int


class HistogramView(TypedDict):
    edges: list[float]
    counts: list[int]


class LinksView(TypedDict):
    runs: str
    page: str
    neuronpedia: str | None


class FeatureView(TypedDict):
    sae_id: str
    layer: int
    feature_id: int
    d_sae: int
    label: str | None
    density: DensityView
    histogram: HistogramView
    top_runs: list[TopRunView]
    examples: orjson.Fragment
    links: LinksView
    complete: bool


class FeatureRunSummaryView(RunSummaryView):
    feature_max_activation: float


class FeatureRunsPageView(TypedDict):
    runs: list[FeatureRunSummaryView]
    next_cursor: str | None


class SearchResultView(TypedDict):
    sae_id: str
    layer: int
    feature_id: int
    label: str | None
    runs_fired: int


class SearchView(TypedDict):
    results: list[SearchResultView]


class LabelsView(TypedDict):
    sae_id: str
    layer: int
    d_sae: int
    labels: dict[str, str]

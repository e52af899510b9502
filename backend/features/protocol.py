"""Wire models of the /playground/features SAE proxy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.activations.protocol import MAX_SAE_LAYER, MAX_SAE_TOP_K, SAE_ID_PATTERN, TimelineEntry

MAX_SEQUENCE = 8192
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
FeatureId = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ExtractFeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_SEQUENCE)
    sae_id: str | None = Field(None, pattern=SAE_ID_PATTERN)
    layer: int | None = Field(None, ge=0, le=MAX_SAE_LAYER)
    top_k: int = Field(20, ge=1, le=MAX_SAE_TOP_K)
    output_start: int | None = Field(None, ge=0, le=MAX_SEQUENCE)

    @model_validator(mode="after")
    def _start_inside(self):
        if self.output_start is not None and self.output_start > len(self.token_ids):
            raise ValueError("output_start must be at most len(token_ids)")
        return self


class ExtractFeaturesResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    sae_id: str
    layer: int
    d_sae: int | None = None
    model_id: str | None = None
    feature_timeline: list[TimelineEntry]


class AnalyzeFeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_SEQUENCE)
    sae_id: str | None = Field(None, pattern=SAE_ID_PATTERN)
    layer: int | None = Field(None, ge=0, le=MAX_SAE_LAYER)
    feature_ids: list[FeatureId] = Field(min_length=1, max_length=64)


# -- the feature explorer ------------------------------------------------------------------------

MAX_FEATURE_ID = 2**31 - 1
MAX_TOP_RUNS = 50
MAX_SEARCH_RESULTS = 100
MAX_QUERY_CHARS = 200
MAX_LABEL_IDS = 2000


class Density(BaseModel):
    runs_fired: int = Field(
        description="runs with the feature in some non-special position's top-k"
    )
    runs_total: int = Field(description="stored runs with activations from this SAE")
    positions_fired: int
    positions_total: int = Field(description="non-special positions of those runs")


class Histogram(BaseModel):
    edges: list[float] = Field(
        description="bin edges, fixed per SAE (len(counts) + 1); the last bin also counts "
        "activations above its upper edge"
    )
    counts: list[int] = Field(description="positions that fired, by activation bin")


class WindowToken(BaseModel):
    position: int
    token: str | None
    activation: float | None = Field(
        description="this feature's activation here; null when not in the position's top-k"
    )


class TopRun(BaseModel):
    request_id: str
    created_at: datetime
    prompt_preview: str
    max_activation: float
    max_position: int
    window: list[WindowToken] = Field(description="tokens around max_position")


class FeatureLinks(BaseModel):
    runs: str = Field(description="the runs listing filtered by this feature (API path)")
    page: str = Field(description="the page opened on this feature")
    neuronpedia: str | None = Field(None, description="the feature's public Neuronpedia page")


class FeatureResponse(BaseModel):
    sae_id: str
    layer: int
    feature_id: int
    d_sae: int
    label: str | None
    density: Density
    histogram: Histogram
    top_runs: list[TopRun]
    examples: list[dict[str, Any]] = Field(
        description="the SAE's own max-activating contexts, when its folder has them"
    )
    links: FeatureLinks
    complete: bool = Field(
        description="false while more runs wait to be indexed than one answer merges"
    )


class SearchResult(BaseModel):
    sae_id: str
    layer: int
    feature_id: int
    label: str | None
    runs_fired: int


class SearchResponse(BaseModel):
    results: list[SearchResult]


class LabelsResponse(BaseModel):
    sae_id: str
    layer: int
    d_sae: int
    labels: dict[str, str] = Field(description="feature id (as text) -> label")

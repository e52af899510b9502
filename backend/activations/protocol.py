"""Wire models of the /playground/activations API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.activations.steer_protocol import (
    MAX_STEER_FEATURES,
    PairRef,
    SteerFeature,
    Steering,
)

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
SAE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,199}$"
MAX_SAE_TOP_K = 128
MAX_SAE_LAYER = 255
MAX_PAGE = 1000
MAX_POSITION = 1_000_000
RESERVED_REQUEST_IDS = frozenset({"run", "runs", "summary", "health", "compare"})


class ActivationRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The prompt's length and max_tokens are bounded by the deployment's caps
    # (PLAYGROUND_MAX_PROMPT_CHARS, PLAYGROUND_MAX_TOKENS; backend/activations/limits.py),
    # checked before any work, so that the 422 names the one number the page shows too.
    prompt: str = Field(min_length=1, description="at most PLAYGROUND_MAX_PROMPT_CHARS characters")
    model_id: str | None = Field(None, max_length=200, description="empty/unknown: the default")
    max_tokens: int = Field(128, ge=1, description="at most PLAYGROUND_MAX_TOKENS")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=1000, description="0 disables top-k sampling")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    chat: bool = Field(True, description="wrap the prompt in the model's chat template")
    parse_special_tokens: bool = Field(
        False,
        description="raw mode (chat: false) only: read special-token text as special tokens; "
        "chat text is never parsed for them",
    )
    collect_activations: bool = True
    inline_sae: bool = True
    sae_id: str | None = Field(None, pattern=SAE_ID_PATTERN, description="None: the default SAE")
    sae_layer: int | None = Field(None, ge=0, le=MAX_SAE_LAYER)
    sae_top_k: int = Field(20, ge=1, le=MAX_SAE_TOP_K)
    request_id: str | None = Field(None, pattern=REQUEST_ID_PATTERN)
    steer: list[SteerFeature] | None = Field(
        None,
        max_length=MAX_STEER_FEATURES,
        description="features to steer with (docs/steering.md); at most "
        "PLAYGROUND_MAX_STEER_FEATURES",
    )
    compare: bool = Field(
        False,
        description="with steer: also generate the default (unsteered) answer with the same "
        "seed and settings, concurrently, stored and linked as the pair",
    )

    @model_validator(mode="after")
    def _raw_only(self) -> ActivationRunRequest:
        if self.chat and self.parse_special_tokens:
            raise ValueError("parse_special_tokens needs chat: false (chat text is never parsed)")
        if self.compare and not self.steer:
            raise ValueError("compare needs steer (the default is the unsteered answer)")
        return self

    @field_validator("request_id")
    @classmethod
    def _not_a_route(cls, value: str | None) -> str | None:
        # GET /playground/activations/<these> are other routes; such a run could not be read.
        if value in RESERVED_REQUEST_IDS:
            raise ValueError(f"{value!r} is reserved")
        return value

    @field_validator("prompt")
    @classmethod
    def _storable(cls, value: str) -> str:
        # Postgres TEXT holds neither NUL nor lone surrogates; refuse them here, not with a 500.
        if not value.strip():
            raise ValueError("must contain more than whitespace")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("must be valid Unicode text") from exc
        return value


class RunOutput(BaseModel):
    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None


class FeatureActivation(BaseModel):
    feature_id: int
    activation: float


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    position: int
    token_id: int
    token: str | None = None
    segment: Literal["prompt", "output"] | None = None
    special: bool | None = None
    features: list[FeatureActivation]


class TopFeature(BaseModel):
    feature_id: int
    max_activation: float
    hits: int = Field(description="positions where the feature is in that position's top-k")
    mean_activation: float = Field(description="mean activation over those positions")
    max_position: int
    max_token_id: int


class RunPreview(BaseModel):
    sae_id: str
    sae_layer: int
    sae_top_k: int
    feature_timeline: list[TimelineEntry]
    top_features: list[TopFeature]
    row_count: int


class Timings(BaseModel):
    engine: float | None = None
    sae: float | None = None
    db: float | None = None
    total: float | None = None


class RunError(BaseModel):
    code: str
    message: str
    upstream: str | None = None


class ActivationRunResponse(BaseModel):
    request_id: str
    permalink: str = Field(
        description="absolute URL of the page opened on this run (from PUBLIC_BASE_URL, else "
        "the request's origin)"
    )
    created_at: datetime
    status: Literal["ok", "failed", "stopped"]
    model_id: str
    prompt: str
    output: RunOutput | None
    preview: RunPreview | None = Field(description="null when activations were not collected")
    error: RunError | None = None
    events: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    timings_ms: Timings
    trace_id: str | None = Field(
        None,
        description="the X-Request-ID of the request that made this run (the id its log lines "
        "carry in the backend, the engine and the SAE service); null for older runs",
    )
    owner_token: str | None = Field(
        None,
        description="only in the answer that created the run (once): send it as X-Run-Owner to "
        "re-run or delete this request_id (and its pair's default run)",
    )
    steering: Steering | None = Field(
        None, description="a steered run and its default: the steering spec and its read-back"
    )
    pair: PairRef | None = Field(None, description="a run of a steered/default pair")


class ActivationRow(BaseModel):
    step: int | None = Field(description="index within the output; null for prompt positions")
    token_position: int
    feature_id: int
    activation_value: float
    rank: int = Field(description="1-based rank within its position")
    token_id: int | None
    token: str | None


class RowsResponse(BaseModel):
    request_id: str
    total: int
    limit: int
    offset: int
    rows: list[ActivationRow]


class TopFeaturesResponse(BaseModel):
    request_id: str
    segment: Literal["all", "prompt", "output"]
    include_special: bool
    top_features: list[TopFeature]


class RunSummary(BaseModel):
    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt_preview: str
    status: Literal["ok", "failed", "stopped"]
    error: RunError | None
    prompt_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    has_preview: bool
    pruned: bool
    timings_ms: Timings
    feature_max_activation: float | None = Field(
        None, description="only when the listing is filtered by a feature: its max in this run"
    )


class RunsPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None


class ModelCount(BaseModel):
    model_id: str
    runs: int


class SummaryResponse(BaseModel):
    total_runs: int
    ok_runs: int
    failed_runs: int
    with_preview: int
    pruned_runs: int
    runs_last_24h: int
    first_run_at: datetime | None
    last_run_at: datetime | None
    models: list[ModelCount]


class Check(BaseModel):
    ok: bool
    latency_ms: float | None
    error: str | None
    age_s: float | None = Field(
        None,
        description="seconds since this upstream was last asked (engine and SAE: answered from "
        "a cache refreshed at most every PLAYGROUND_HEALTH_INTERVAL_S); null for Postgres",
    )


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "down"]
    postgres: Check
    engine: Check
    sae: Check
    error: RunError | None = Field(None, description="set when Postgres is down (503)")

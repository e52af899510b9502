"""Wire models of the SAE service (contracts.md, "SAE service")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Static outer bounds; the service applies the tighter configured ones (model context,
# SAE width, settings) and answers 422 with a specific code.
MAX_TOKENS_ON_WIRE = 131072
MAX_TOP_K_ON_WIRE = 4096
MAX_FEATURE_IDS_ON_WIRE = 4096
MAX_FEATURE_ID_ON_WIRE = 1 << 24  # d_sae of any released SAE is far below
MAX_STEERING_FEATURES_ON_WIRE = 64

Segment = Literal["prompt", "output"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: list[int] = Field(min_length=1, max_length=MAX_TOKENS_ON_WIRE)
    sae_id: str | None = Field(default=None, min_length=1, max_length=200)
    layer: int | None = Field(default=None, ge=0, le=1000)
    output_start: int | None = Field(default=None, ge=0, le=MAX_TOKENS_ON_WIRE)


class ExtractRequest(_Request):
    """The full sequence (prompt then output); ``sae_id``/``layer`` None -> the default SAE.

    A stream's chunk (incremental extraction, docs/sae.md): ``stream_id`` names the client's
    stream, whose KV cache lets the forward run only the positions it has not seen;
    ``from_position`` answers the timeline from that position on (the positions before were
    answered by earlier chunks); ``stream_end`` drops the cache after this chunk (with
    ``from_position`` = the sequence's length: only that, an empty timeline)."""

    top_k: int = Field(default=20, ge=1, le=MAX_TOP_K_ON_WIRE)
    stream_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$"
    )
    from_position: int = Field(default=0, ge=0, le=MAX_TOKENS_ON_WIRE)
    stream_end: bool = False


class AnalyzeRequest(_Request):
    feature_ids: list[int] = Field(min_length=1, max_length=MAX_FEATURE_IDS_ON_WIRE)


class SteeringVectorsRequest(BaseModel):
    """Decoder rows to steer with (``sae_id``/``layer`` None -> the default SAE)."""

    model_config = ConfigDict(extra="forbid")

    sae_id: str | None = Field(default=None, min_length=1, max_length=200)
    layer: int | None = Field(default=None, ge=0, le=1000)
    feature_ids: list[Annotated[int, Field(ge=0, le=MAX_FEATURE_ID_ON_WIRE)]] = Field(
        min_length=1, max_length=MAX_STEERING_FEATURES_ON_WIRE
    )


class SteeringVector(BaseModel):
    feature_id: int
    vector_b64: str = Field(
        description="base64 of d_in little-endian float32 values: the feature's decoder row in "
        "the model's residual units (any input scaling of the SAE undone)"
    )
    norm: float = Field(description="the row's L2 norm (in the same units)")


class SteeringVectorsResponse(BaseModel):
    sae_id: str
    layer: int
    d_in: int
    vectors: list[SteeringVector] = Field(description="in the order of feature_ids")


class FeatureActivation(BaseModel):
    feature_id: int
    activation: float


class TokenInfo(BaseModel):
    position: int
    token_id: int
    token: str
    segment: Segment
    special: bool


class TimelineEntry(TokenInfo):
    features: list[FeatureActivation]


class SaeWork(BaseModel):
    """SAE work: positions run through the truncated forward for this request (the whole
    sequence, or a stream chunk's positions its cache did not hold)."""

    positions: int
    cache: Literal["hit", "miss"] | None = Field(
        description="a stream chunk's KV cache: hit (only new positions ran) or miss (the "
        "whole sequence ran); null without stream_id"
    )


class ExtractResponse(BaseModel):
    sae_id: str
    layer: int
    d_sae: int
    model_id: str
    top_k: int
    from_position: int  # the timeline's first position
    feature_timeline: list[TimelineEntry]
    batch_size: int  # requests computed together with this one
    work: SaeWork
    timings_ms: dict[str, float]


class FeatureTrace(BaseModel):
    feature_id: int
    activations: list[float]  # one per position
    max_activation: float
    argmax_position: int
    explanation: str | None = None


class AnalyzeResponse(BaseModel):
    sae_id: str
    layer: int
    d_sae: int
    model_id: str
    tokens: list[TokenInfo]
    features: list[FeatureTrace]


class SaeRef(BaseModel):
    sae_id: str
    layer: int


class SaeInfo(BaseModel):
    sae_id: str
    layers: list[int]
    d_in: int
    d_sae: int
    architecture: str
    model_id: str | None
    demo: bool
    description: str | None
    has_labels: bool  # a labels.json beside (one of) its layers
    has_examples: bool  # an examples file beside (one of) its layers


class FeatureExample(BaseModel):
    """One max-activating context: tokens around the max, this feature's activation at each."""

    tokens: list[str]
    token_ids: list[int]
    activations: list[float | None] = Field(
        description="this feature's activation at each token; null: not encoded (a sink)"
    )
    max_index: int = Field(description="index of the max within tokens")
    max_activation: float


class FeatureResponse(BaseModel):
    sae_id: str
    layer: int
    feature_id: int
    d_sae: int
    label: str | None = Field(description="from the SAE folder's labels.json; null if none")
    examples: list[FeatureExample] = Field(description="strongest first; [] if none")


class LabelsResponse(BaseModel):
    sae_id: str
    layer: int
    d_sae: int
    labels: dict[int, str] = Field(description="feature id -> label, labelled features only")
    words: dict[int, str] = Field(
        default_factory=dict,
        description="labelled feature id -> the distinct words of its examples' contexts, "
        "space-separated (what a label search matches besides the label); {} without examples",
    )


class SaesResponse(BaseModel):
    default: SaeRef
    saes: list[SaeInfo]


class StreamCacheHealth(BaseModel):
    """The streams' KV caches now, and their hits/misses/evictions since start."""

    streams: int
    bytes: int
    hits: int
    misses: int
    evicted: int


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_id: str
    device: str
    dtype: str
    loaded_saes: list[SaeRef]
    torch_threads: int  # CPU threads torch computes with (SAE_SERVICE_TORCH_THREADS)
    queued_jobs: int = 0  # waiting for the batcher (bounded by SAE_SERVICE_MAX_QUEUED_JOBS)
    jobs_dropped: int = 0  # cancelled by a departed caller before computing
    # SAE work since start: positions run through the truncated forward (docs/sae.md).
    work_positions: int = 0
    stream_caches: StreamCacheHealth | None = None

"""The SAE service (PLAYGROUND_SAE_URL): feature extraction, analysis, the SAE list.

Timelines are not validated here with pydantic (tens of thousands of small objects would cost
tens of ms per run): the caller checks them while packing (backend/activations/packed.py).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from backend.upstreams.client import JsonUpstream

NAME = "sae"


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: list[int]
    sae_id: str
    layer: int
    top_k: int
    output_start: int | None = None
    # A stream's chunk (docs/sae.md, "Incremental extraction"); None: not sent.
    stream_id: str | None = None
    from_position: int | None = None
    stream_end: bool | None = None


class SaeWork(BaseModel):
    """Positions the SAE service ran through its truncated forward for one request."""

    model_config = ConfigDict(extra="ignore")

    positions: int = Field(ge=0)
    cache: Literal["hit", "miss"] | None = None


class ExtractEnvelope(BaseModel):
    """The extract answer minus the timeline entries (checked separately, see module doc)."""

    model_config = ConfigDict(extra="ignore")

    sae_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    layer: int = Field(ge=0, le=100_000)
    d_sae: int | None = None
    model_id: str | None = None
    feature_timeline: list[Any]
    from_position: int = 0
    work: SaeWork | None = None  # absent from an SAE service older than incremental extraction


class AnalyzeTrace(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feature_id: int
    activations: list[float]
    max_activation: float
    argmax_position: int


class AnalyzeEnvelope(BaseModel):
    """The analyze answer, checked (then passed through raw): one trace per asked feature."""

    model_config = ConfigDict(extra="ignore")

    sae_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    layer: int = Field(ge=0, le=100_000)
    d_sae: int | None = None
    model_id: str | None = None
    tokens: list[Any] | None = None
    features: list[AnalyzeTrace]


class SaeDefault(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sae_id: str
    layer: int


class SaeInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    sae_id: str
    layers: list[int]
    d_in: int | None = None
    d_sae: int | None = None
    architecture: str | None = None
    model_id: str | None = None
    demo: bool = False
    description: str | None = None
    has_labels: bool = False
    has_examples: bool = False


class SaeList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    default: SaeDefault | None = None
    saes: list[SaeInfo]


class SaeLabels(BaseModel):
    """``GET /saes/{sae_id}/{layer}/labels``: every labelled feature of one SAE."""

    model_config = ConfigDict(extra="ignore")

    sae_id: str
    layer: int
    d_sae: int | None = None
    labels: dict[int, str]
    words: dict[int, str] = {}  # the words of each feature's examples (what search also matches)


class FeatureInfo(BaseModel):
    """``GET /features/{sae_id}/{layer}/{feature_id}``: the SAE folder's own view of a feature."""

    model_config = ConfigDict(extra="ignore")

    label: str | None = None
    examples: list[dict[str, Any]] = Field(default_factory=list)


class SteeringVector(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feature_id: int
    vector_b64: str = Field(min_length=4, max_length=1 << 20)
    norm: float


class SteeringVectors(BaseModel):
    """``POST /steering_vectors``: decoder rows in the model's residual units."""

    model_config = ConfigDict(extra="ignore")

    sae_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")
    layer: int = Field(ge=0, le=100_000)
    d_in: int = Field(ge=1, le=1 << 18)
    vectors: list[SteeringVector]


_ENVELOPE = TypeAdapter(ExtractEnvelope)
_STEERING = TypeAdapter(SteeringVectors)
_LABELS = TypeAdapter(SaeLabels)
_FEATURE = TypeAdapter(FeatureInfo)
_SAE_LIST = TypeAdapter(SaeList)
_ANALYSIS = TypeAdapter(AnalyzeEnvelope)


class SaeClient:
    def __init__(self, upstream: JsonUpstream) -> None:
        self.upstream = upstream

    @property
    def name(self) -> str:
        return self.upstream.name

    async def extract(self, request: ExtractRequest) -> tuple[ExtractEnvelope, dict[str, Any]]:
        """Returns the checked envelope and the raw body (whose timeline the caller checks)."""
        body = request.model_dump(exclude_none=True)
        return await self.upstream.call("POST", "/extract_features", _ENVELOPE, json=body)

    async def analyze(self, body: dict[str, Any]) -> tuple[AnalyzeEnvelope, dict[str, Any]]:
        """Returns the checked envelope and the raw body (what the caller passes on)."""
        return await self.upstream.call("POST", "/analyze_features", _ANALYSIS, json=body)

    async def steering_vectors(
        self, sae_id: str, layer: int, feature_ids: list[int]
    ) -> SteeringVectors:
        body = {"sae_id": sae_id, "layer": layer, "feature_ids": feature_ids}
        result, _ = await self.upstream.call("POST", "/steering_vectors", _STEERING, json=body)
        return result

    async def list_saes(self) -> SaeList:
        result, _ = await self.upstream.call("GET", "/saes", _SAE_LIST)
        return result

    async def labels(self, sae_id: str, layer: int) -> SaeLabels | None:
        """The SAE's labels in one request; None when the service has none (or no such route)."""
        path = f"/saes/{quote(sae_id, safe='')}/{layer}/labels"
        return await self.upstream.call_optional("GET", path, _LABELS)

    async def feature(self, sae_id: str, layer: int, feature_id: int) -> FeatureInfo | None:
        path = f"/features/{quote(sae_id, safe='')}/{layer}/{feature_id}"
        return await self.upstream.call_optional("GET", path, _FEATURE)

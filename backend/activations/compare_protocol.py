"""Wire models of the run comparison (GET /playground/activations/compare) and of run export."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.activations.protocol import RunSummary

MAX_THRESHOLD = 1e6


class RunFeatureStats(BaseModel):
    max: float = Field(description="max activation over the run's counted positions; 0 if none")
    mean: float = Field(description="mean over the positions where it is in the top-k; 0 if none")
    hits: int = Field(description="positions where the feature is in that position's top-k")


class FeatureChange(BaseModel):
    feature_id: int
    label: str | None = Field(description="from the backend's label cache; null when unknown")
    a: RunFeatureStats
    b: RunFeatureStats
    delta_max: float = Field(description="b.max - a.max")
    delta_mean: float = Field(description="b.mean - a.mean")


class Opcode(BaseModel):
    tag: Literal["equal", "replace", "insert", "delete"] = Field(
        description="difflib's: a[a_start:a_end] equals / is replaced by / is inserted as / is "
        "deleted from b[b_start:b_end]"
    )
    a_start: int
    a_end: int
    b_start: int
    b_end: int


class AppearedFeature(BaseModel):
    feature_id: int
    activation: float


class ChangedFeature(BaseModel):
    feature_id: int
    a: float
    b: float


class PositionChange(BaseModel):
    a_position: int
    b_position: int
    appeared: list[AppearedFeature] = Field(description="in b's top-k here, not in a's (b's value)")
    vanished: list[AppearedFeature] = Field(description="in a's top-k here, not in b's (a's value)")
    changed: list[ChangedFeature] = Field(description="in both, |b - a| > threshold")


class Alignment(BaseModel):
    a_tokens: list[str]
    b_tokens: list[str]
    a_output_start: int
    b_output_start: int
    prefix: int = Field(description="leading positions with the same token id in both runs")
    opcodes: list[Opcode] = Field(description="cover both token sequences, in order")
    coarse: bool = Field(
        description="true when the differing middle was too long to diff token by token "
        "(answered as one replace)"
    )
    threshold: float
    positions: list[PositionChange] = Field(
        description="aligned positions (equal opcodes) in the segment with any feature change"
    )
    truncated: bool = Field(description="true when positions stop early (too many changes)")


class CompareResponse(BaseModel):
    a: RunSummary
    b: RunSummary
    sae_id: str
    sae_layer: int
    segment: Literal["all", "prompt", "output"]
    include_special: bool
    total_features: int = Field(description="features fired in either run (in the segment)")
    features: list[FeatureChange] = Field(description="by |delta_max| desc, |delta_mean| desc")
    alignment: Alignment

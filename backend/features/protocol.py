"""Wire models of the /playground/features SAE proxy."""

from __future__ import annotations

from typing import Annotated

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

"""Wire models of steering on /playground/activations/run (contracts.md, "third round"):
the request's ``steer`` items and the answer's ``steering`` and ``pair``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The wire's outer bounds; Settings may only tighten them (playground_max_steer_features,
# playground_max_steer_strength).
MAX_STEER_FEATURES = 8
MAX_STEER_STRENGTH = 1000.0
MAX_FEATURE_ID = 1 << 24
STEER_SAE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,199}$"


class SteerFeature(BaseModel):
    """``strength x`` the feature's decoder row (residual units) is added after decoder block
    ``layer`` at every position of the steered run."""

    model_config = ConfigDict(extra="forbid")

    feature_id: int = Field(ge=0, lt=MAX_FEATURE_ID)
    strength: float = Field(
        ge=-MAX_STEER_STRENGTH,
        le=MAX_STEER_STRENGTH,
        allow_inf_nan=False,
        description="multiplies the decoder row; |strength| at most PLAYGROUND_MAX_STEER_STRENGTH",
    )
    sae_id: str | None = Field(
        None, pattern=STEER_SAE_ID_PATTERN, description="None: the run's SAE"
    )
    layer: int | None = Field(None, ge=0, le=255, description="None: the run's SAE layer")


class ReadBack(BaseModel):
    """The steered feature's activation over a run's OUTPUT positions, as the run's stored
    timeline has it (its top ``sae_top_k`` per position; a position where the feature is not
    among them counts 0)."""

    max: float
    mean: float
    hits: int = Field(description="output positions where it is in the top-k")


class SteeringFigure(BaseModel):
    feature_id: int
    strength: float
    sae_id: str
    layer: int
    norm: float | None = Field(
        description="L2 norm of the decoder row added (residual units); null when the run "
        "failed before the rows came"
    )
    steered: ReadBack | None = Field(
        description="null when the run kept no activations of this SAE and layer"
    )
    default: ReadBack | None = Field(description="null without `compare` (or as for steered)")


class Steering(BaseModel):
    features: list[SteeringFigure]
    seed: int | None = Field(description="the seed both answers of a pair were generated with")


class PairRef(BaseModel):
    request_id: str | None = Field(
        description="the other run of the pair (null once it was deleted)"
    )
    role: Literal["steered", "default"] = Field(description="this run's role in the pair")

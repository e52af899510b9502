"""Wire models of the engine service (contracts.md, "Engine")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Static ceilings; the tighter, deployment-specific bounds (context length, batch size, output
# length) come from EngineSettings and are checked by the service with a structured 422.
MAX_PROMPT_CHARS = 400_000
MAX_BATCH_HARD = 1024
# Steering (docs/engine.md "Steering"): the wire's outer bounds; EngineSettings holds the
# deployment's (max_steer_vectors, max_steer_scale) and the model fixes d_model.
MAX_STEER_VECTORS = 8
MAX_D_MODEL_ON_WIRE = 32768
MAX_STEER_B64_CHARS = 4 * ((4 * MAX_D_MODEL_ON_WIRE + 2) // 3)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SpecialTokens(_Request):
    chat: bool = Field(True, description="wrap the prompt as one user turn in the chat template")
    parse_special_tokens: bool = Field(
        False,
        description="raw mode only: read special-token text (<|eot_id|>) as the special token; "
        "in chat mode user text is never parsed for special tokens",
    )

    @model_validator(mode="after")
    def _raw_only(self):
        if self.chat and self.parse_special_tokens:
            raise ValueError("parse_special_tokens needs chat: false (chat text is never parsed)")
        return self


class SteerVector(_Request):
    """``scale x vector`` added to the residual stream after decoder block ``layer`` (the point
    the SAE reads) at every position of this request, prompt and output."""

    layer: int = Field(..., ge=0, le=1000, description="decoder block index (0-based)")
    vector_b64: str = Field(
        ...,
        min_length=4,
        max_length=MAX_STEER_B64_CHARS,
        description="base64 of d_model little-endian float32 values (finite)",
    )
    scale: float = Field(
        1.0, allow_inf_nan=False, description="multiplies the vector; bound: ENGINE_MAX_STEER_SCALE"
    )


class GenerateRequest(_SpecialTokens):
    prompt: str = Field(..., max_length=MAX_PROMPT_CHARS)
    model_id: str | None = Field(
        None, max_length=256, description="ignored if empty or unknown: the served model answers"
    )
    max_tokens: int = Field(128, ge=1, le=131072)
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=131072, description="0 = off")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same output")
    request_id: str | None = Field(None, min_length=1, max_length=128)
    stream: bool = Field(
        False, description="answer Server-Sent Events: `token` per output token, then `done`"
    )
    steer: list[SteerVector] | None = Field(
        None,
        max_length=MAX_STEER_VECTORS,
        description="vectors added to this request's residual stream (none: unsteered); 422 "
        "`steering_unavailable` where this engine cannot steer",
    )


class Usage(BaseModel):
    prompt_tokens: int
    output_tokens: int


class Timings(BaseModel):
    queue: float = Field(description="ms from receipt to the first output token (queue+prefill)")
    generate: float = Field(description="ms from the first output token to the last")
    total: float = Field(description="ms from receipt to the answer")


class GenerateResponse(BaseModel):
    request_id: str
    model_id: str
    output_text: str
    output_token_ids: list[int]
    prompt_token_ids: list[int] = Field(
        description="exactly what the model saw (template and BOS included)"
    )
    finish_reason: Literal["stop", "length", "abort"]
    usage: Usage
    timings_ms: Timings


class PromptEvent(BaseModel):
    """The stream's first event, before any token: what the model will see, so that a client
    can work on the prompt (its SAE features) while the answer is generated."""

    request_id: str
    model_id: str
    prompt_token_ids: list[int]
    tokens: list[str] = Field(description="each prompt token decoded on its own")


class TokenEvent(BaseModel):
    """One output token as it is generated. `text` never splits a character (a token that ends
    mid-character has "", the completing one carries it); the texts concatenate to `output_text`."""

    step: int = Field(description="index within the output")
    token_id: int
    text: str


class BatchRequest(_Request):
    requests: list[GenerateRequest] = Field(..., min_length=1, max_length=MAX_BATCH_HARD)


class BatchResponse(BaseModel):
    results: list[GenerateResponse]


class TokenizeRequest(_SpecialTokens):
    """As in /generate (same ``chat`` and ``parse_special_tokens``): the IDs it would feed."""

    text: str = Field(..., max_length=MAX_PROMPT_CHARS)


class TokenizeResponse(BaseModel):
    token_ids: list[int]
    tokens: list[str] = Field(description="each token decoded on its own")
    count: int


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_id: str
    backend: Literal["vllm"]
    device: str
    max_model_len: int
    in_flight: int = Field(description="requests the engine has not finished")
    aborted: int = Field(
        0, description="requests abandoned before they finished (their caller left), since start"
    )

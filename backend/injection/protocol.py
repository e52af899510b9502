"""Wire model of the injection playground's OpenAI-compatible chat request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    # OpenAI messages carry optional fields (name, tool_calls, ...) that the server understands.
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=32)
    content: str | list[dict[str, Any]] | None = Field(None, max_length=100_000)


class ChatCompletionRequest(BaseModel):
    # OpenAI compatibility: the injection playground may send fields this proxy does not know
    # (the MAX server's own extensions); they are passed through untouched, so extra="allow"
    # here, the one exception to extra="forbid". The fields we do know are bounded.
    model_config = ConfigDict(extra="allow")

    # Static outer bounds; the fields that drive cost are held to the configured caps by the
    # proxy (PLAYGROUND_INJECTION_*, 422 over a cap).
    model: Literal["llama-3.1-8b", "qwen-14b"]
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768)
    min_tokens: int | None = Field(None, ge=0, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=8)
    best_of: int | None = Field(None, ge=1, le=8)
    ignore_eos: bool | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stream: bool = False

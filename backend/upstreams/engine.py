"""The generation engine (vLLM, at PLAYGROUND_ACTIVATIONS_HF_URL): POST /generate."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from backend.upstreams.client import JsonUpstream

NAME = "engine"


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    model_id: str | None = None
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None = None
    chat: bool = True
    parse_special_tokens: bool = False
    request_id: str | None = None


# Bounded so that whatever passes can be stored (BIGINT[], TEXT) without a database error.
TokenId = Annotated[int, Field(ge=0, lt=2**31)]
NO_NUL = r"^[^\x00]*$"


class GenerateResponse(BaseModel):
    # Upstream answers may grow fields (contracts.md); we keep what we use.
    model_config = ConfigDict(extra="ignore")

    request_id: str | None = None
    model_id: str = Field(min_length=1, max_length=256)
    output_text: str
    output_token_ids: list[TokenId]
    prompt_token_ids: list[TokenId] = Field(default_factory=list)
    finish_reason: str | None = Field(None, max_length=64, pattern=NO_NUL)


_RESPONSE = TypeAdapter(GenerateResponse)


class EngineClient:
    def __init__(self, upstream: JsonUpstream) -> None:
        self.upstream = upstream

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        body = request.model_dump()
        result, _ = await self.upstream.call("POST", "/generate", _RESPONSE, json=body)
        return result

"""The generation engine (vLLM, at PLAYGROUND_ACTIVATIONS_HF_URL): POST /generate, and
POST /tokenize (the exact prompt token count the timeline budget may need)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from backend.upstreams.client import EventStream, JsonUpstream, open_event_stream
from common.errors import UpstreamError

NAME = "engine"


class SteerVector(BaseModel):
    """``scale x vector`` added after decoder block ``layer`` (contracts.md, "Steering")."""

    model_config = ConfigDict(extra="forbid")

    layer: int
    vector_b64: str
    scale: float


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
    # contracts.md "Steering (engine)"; None: not sent.
    steer: list[SteerVector] | None = None


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


class TokenizeRequest(BaseModel):
    """engine/generation/protocol.py ``TokenizeRequest``: the IDs /generate would feed for
    ``text`` with the same ``chat`` and ``parse_special_tokens``."""

    model_config = ConfigDict(extra="forbid")

    text: str
    chat: bool = True
    parse_special_tokens: bool = False


class TokenizeResponse(BaseModel):
    """engine/generation/protocol.py ``TokenizeResponse``; ``count`` must be the IDs' count."""

    model_config = ConfigDict(extra="ignore")

    token_ids: list[TokenId]
    tokens: list[str]
    count: int = Field(ge=0)

    @model_validator(mode="after")
    def _counted(self) -> TokenizeResponse:
        if self.count != len(self.token_ids) or len(self.tokens) != len(self.token_ids):
            raise ValueError(
                f"count {self.count} for {len(self.token_ids)} token ids and "
                f"{len(self.tokens)} tokens"
            )
        return self


class PromptEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_id: str = Field(min_length=1, max_length=256)
    prompt_token_ids: list[TokenId]
    tokens: list[str]


class TokenEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: int = Field(ge=0)
    token_id: TokenId
    text: str


# An unsteered request's body is what it was before steering existed.
_UNSTEERED = {"steer"}
StreamEvent = PromptEvent | TokenEvent | GenerateResponse
_RESPONSE = TypeAdapter(GenerateResponse)
_TOKENIZED = TypeAdapter(TokenizeResponse)
_EVENTS: dict[str, type[BaseModel]] = {
    "prompt": PromptEvent,
    "token": TokenEvent,
    "done": GenerateResponse,
}


class GenerationStream:
    """The engine's open stream for one request: its prompt, tokens, then the answer. Closing
    it (also on cancellation) drops the connection, which aborts the request in the engine."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    async def events(self) -> AsyncIterator[StreamEvent]:
        name = self._stream.name
        async for event, data in self._stream.events():
            if event == "error":
                error = data.get("error") if isinstance(data, dict) else None
                message = error.get("message") if isinstance(error, dict) else str(data)[:200]
                raise UpstreamError(f"{name} failed while streaming: {message}", upstream=name)
            model = _EVENTS.get(event)
            if model is None:
                continue  # events we do not know (contracts: more may be added)
            try:
                yield model.model_validate(data)  # type: ignore[misc]
            except ValidationError as exc:
                raise UpstreamError(
                    f"{name} sent an unexpected {event} event: {exc.errors()[0]['msg']}",
                    upstream=name,
                ) from exc
            if event == "done":
                return
        raise UpstreamError(f"{name} ended its stream without an answer", upstream=name)

    async def aclose(self) -> None:
        await self._stream.aclose()


class EngineClient:
    def __init__(self, upstream: JsonUpstream) -> None:
        self.upstream = upstream

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        body = request.model_dump(exclude=_UNSTEERED if request.steer is None else None)
        result, _ = await self.upstream.call("POST", "/generate", _RESPONSE, json=body)
        return result

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        result, _ = await self.upstream.call(
            "POST", "/tokenize", _TOKENIZED, json=request.model_dump()
        )
        return result

    async def count_tokens(self, request: TokenizeRequest) -> int:
        """The exact number of tokens /generate would feed for this text."""
        return (await self.tokenize(request)).count

    async def open_stream(self, request: GenerateRequest) -> GenerationStream:
        """Start a streamed generation; the engine's up-front errors raise here."""
        body = {
            **request.model_dump(exclude=_UNSTEERED if request.steer is None else None),
            "stream": True,
        }
        return GenerationStream(await open_event_stream(self.upstream, "/generate", json=body))

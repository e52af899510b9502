"""Server-Sent Events (contracts.md, "Streaming (SSE)"): one frame per event, each `data:` one
JSON object; the same framing and parsing for the engine, the backend and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

MEDIA_TYPE = "text/event-stream"
# No proxy buffering (nginx) and no caching: each event must reach the client as it is written.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: str, data: BaseModel | dict[str, Any]) -> bytes:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventStreamResponse(StreamingResponse):
    """Closes its iterator when the response ends, a departed client included, so that the
    iterator's clean-up (cancel the work behind it) runs now rather than when collected."""

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def event_stream(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    return EventStreamResponse(chunks, media_type=MEDIA_TYPE, headers=HEADERS)


def wants_events(accept: str | None) -> bool:
    """Whether an Accept header asks for an event stream."""
    return accept is not None and MEDIA_TYPE in accept.lower()


class Reader:
    """Feed it the stream's lines one by one; it returns (event, data) at each frame's end."""

    def __init__(self) -> None:
        self.event: str = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        elif not line and self.data:
            done = self.event, orjson.loads("\n".join(self.data))
            self.event, self.data = "message", []
            return done
        return None


def parse(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from an event stream's lines (the tests' and benchmarks' reader)."""
    reader = Reader()
    for line in lines:
        if (frame_ := reader.feed(line)) is not None:
            yield frame_


async def aparse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """As `parse`, over httpx's `aiter_lines()`."""
    reader = Reader()
    async for line in lines:
        if (frame_ := reader.feed(line)) is not None:
            yield frame_

"""One request id per request, end to end: taken from the caller's ``X-Request-ID`` when it is
safe (a short printable-ASCII token), made otherwise, kept in a context variable for the
request's log lines and outgoing calls, and returned as a response header.

The id never reaches a log line or a header raw: a value that is too long, empty, or holds
anything but letters, digits and ``-_.:`` is replaced by a fresh one (never echoed, never
truncated into something else).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_CHARS = 64
_HEADER_BYTES = HEADER.encode()
_SAFE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_CHARS}}}")

_current: ContextVar[str | None] = ContextVar("playground_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize(value: str | bytes | None) -> str | None:
    """``value`` when it is a safe id, else None (the caller then makes one)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > MAX_CHARS:
            return None
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if _SAFE.fullmatch(value) else None


def current() -> str | None:
    """The id of the request this code runs for (None outside a request)."""
    return _current.get()


def outgoing_headers() -> dict[str, str]:
    """The header that passes this request's id on to an upstream (empty outside a request)."""
    rid = _current.get()
    return {HEADER: rid} if rid is not None else {}


async def propagate(request) -> None:
    """An httpx request event hook: every upstream call carries this request's id."""
    rid = _current.get()
    if rid is not None:
        request.headers[HEADER] = rid


class RequestIdMiddleware:
    """Outermost pure-ASGI middleware: sets the id for everything inside (answers of other
    middleware included) and adds it to every answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name == _HEADER_BYTES:
                given = sanitize(value)
                break
        rid = given or new_request_id()
        header = (_HEADER_BYTES, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER_BYTES]
                message["headers"] = [*headers, header]
            await send(message)

        token = _current.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record (``-`` outside a request) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get() or "-"
        return True

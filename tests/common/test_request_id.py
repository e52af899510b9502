"""The request id (common/request_id.py) and the log formats (common/logging_setup.py): safe ids
kept, anything else replaced (newlines included, which HTTP itself cannot carry, so the
middleware is called with an ASGI scope here), the id on every log record, one JSON object per
line in JSON mode."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from common.logging_setup import JsonFormatter, configure_logging, log_format
from common.request_id import (
    MAX_CHARS,
    RequestIdFilter,
    RequestIdMiddleware,
    current,
    outgoing_headers,
    sanitize,
)


@pytest.mark.parametrize(
    "value", ["abc", "A-b_c.d:e", "0" * MAX_CHARS, "7f3c2a9e1b4d4c5e8f6a7b8c9d0e1f2a"]
)
def test_safe_ids_are_kept(value):
    assert sanitize(value) == value
    assert sanitize(value.encode()) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * (MAX_CHARS + 1),
        "x" * 100_000,
        "line\nbreak",
        "cr\rlf",
        "tab\there",
        "space here",
        "caf\u00e9",
        "nul\x00",
        "semi;colon",
        'quote"',
        "\u202etrojan",
    ],
)
def test_unsafe_ids_are_refused(value):
    assert sanitize(value) is None
    assert sanitize(value.encode("utf-8")) is None


def test_invalid_utf8_bytes_are_refused():
    assert sanitize(b"\xff\xfe") is None


async def _call(header: bytes | None) -> tuple[list, str | None]:
    seen: list[str | None] = []

    async def app(scope, receive, send):
        seen.append(current())
        logging.getLogger("test.rid").info("inside the app")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    headers = [(b"x-request-id", header)] if header is not None else []
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    await RequestIdMiddleware(app)(scope, receive, send)
    start = sent[0]
    answered = dict(start["headers"]).get(b"x-request-id")
    assert seen[0] == (answered.decode() if answered else None)
    assert current() is None  # reset after the request
    return start["headers"], seen[0]


def test_middleware_keeps_replaces_and_answers(caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="test.rid"):
        headers, rid = asyncio.run(_call(b"given-id"))
        assert rid == "given-id" and headers == [(b"x-request-id", b"given-id")]
        hostile = b"evil\nX-Injected: 1" + b"y" * 1000
        headers, rid = asyncio.run(_call(hostile))
        assert rid is not None and len(rid) == 32 and rid != hostile.decode()
        _, fresh = asyncio.run(_call(None))
        assert fresh is not None and len(fresh) == 32
    ids = [r.request_id for r in caplog.records if r.name == "test.rid"]
    assert ids == ["given-id", rid, fresh]
    assert "evil" not in caplog.text


def test_outgoing_headers_outside_a_request_are_empty():
    assert outgoing_headers() == {}


def test_json_lines_carry_the_request_id():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("backend"))
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("two\nlines %s", "here", extra={"stage": "db"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one object per line, embedded newlines escaped
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "two\nlines here" and first["level"] == "WARNING"
    assert first["request_id"] == "-" and first["service"] == "backend"
    assert first["stage"] == "db" and first["logger"] == "test.json"
    assert "ValueError: boom" in second["exc"]


def test_log_format_choice(monkeypatch):
    monkeypatch.delenv("PLAYGROUND_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("PLAYGROUND_LOG_FORMAT", "JSON")
    assert log_format() == "json"
    monkeypatch.setenv("PLAYGROUND_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="PLAYGROUND_LOG_FORMAT"):
        log_format()


def test_configure_logging_replaces_root_handlers(monkeypatch):
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        assert configure_logging("sae", "warning", "json") == "json"
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)

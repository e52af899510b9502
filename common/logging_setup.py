"""Logging of the three services: one handler on the root logger, every record stamped with its
request id. ``PLAYGROUND_LOG_FORMAT=json`` (the default on Modal): one JSON object per line;
otherwise (``text``, the default locally) a readable line.

What a service logs: request metadata (method, path, status, ids, timings, sizes), never a
prompt or an output at INFO or above, never a token or a header value. Levels: DEBUG detail,
INFO one line per request or run, WARNING a degraded but answered request, ERROR a failure of
ours (with its traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any

import orjson

from common.request_id import RequestIdFilter

FORMAT_ENV = "PLAYGROUND_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Attributes every LogRecord has; anything else a caller passed in ``extra=`` is kept.
# (uvicorn adds ``color_message``: the message again, with terminal colours.)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


def log_format(value: str | None = None) -> str:
    """The configured format: ``value``, else $PLAYGROUND_LOG_FORMAT, else text."""
    chosen = (value or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", "service"?, ...extra, "exc"?}``."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if self.service:
            entry["service"] = self.service
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def formatter(fmt: str, service: str | None = None) -> logging.Formatter:
    return JsonFormatter(service) if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(
    service: str, level: str = "info", fmt: str | None = None, *, vllm: bool = False
) -> str:
    """Replace the root logger's handlers with one stderr handler in the chosen format (run
    uvicorn with ``log_config=None`` so its loggers reach it too). With ``vllm`` (the engine,
    before vLLM is imported) and JSON, vLLM's own loggers write JSON in every engine process
    too. Returns the format."""
    chosen = log_format(fmt)
    if vllm and chosen == "json":
        os.environ.setdefault("VLLM_LOGGING_CONFIG_PATH", vllm_logging_config(service, level))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(chosen, service))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return chosen


def vllm_logging_config(service: str, level: str = "info") -> str:
    """A file for vLLM's ``VLLM_LOGGING_CONFIG_PATH`` that makes the ``vllm`` loggers of every
    engine process (API and engine core) write our JSON lines. Returns its path."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "common.logging_setup.JsonFormatter", "service": service},
        },
        "filters": {"request_id": {"()": "common.request_id.RequestIdFilter"}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"vllm": {"handlers": ["json"], "level": level.upper(), "propagate": False}},
    }
    fd, path = tempfile.mkstemp(prefix="vllm-logging-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(config, out)
    return path

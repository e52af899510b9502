"""What `playground up` shows of the running stack: where each service's metrics are, and one
line per run as the backend logs it (its ``backend.runs`` INFO lines, read from its log)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

RUN_LOGGER = "backend.runs"
_TEXT_MARK = f" {RUN_LOGGER} "
_JSON_MARK = f'"logger":"{RUN_LOGGER}"'.encode()
MAX_LINE_BYTES = 4096


def write_token(path: Path, token: str) -> Path:
    """The service token of this start, readable only by its owner (for scraping /metrics)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return path


def metrics_lines(
    urls: dict[str, str], token_path: Path | None, backend_token_set: bool
) -> list[str]:
    """One line per service: its /metrics URL and what it needs."""
    lines = ["Metrics (Prometheus text format; docs/operations.md):"]
    for name, url in urls.items():
        if name == "backend":
            need = "PLAYGROUND_METRICS_TOKEN as bearer" if backend_token_set else "open"
        elif token_path is not None:
            need = f"bearer token in {token_path}"
        else:
            need = "bearer PLAYGROUND_SERVICE_TOKEN"
        lines.append(f"  {name:8s} {url.rstrip('/')}/metrics ({need})")
    return lines


class RunLines:
    """Follows a log file; ``poll`` answers the run lines written since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def poll(self) -> list[str]:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read(1 << 20)
        except OSError:
            return []
        self.offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        self._partial = self._partial[-MAX_LINE_BYTES:]
        return [text for line in complete if (text := run_line(line)) is not None]


def run_line(line: bytes) -> str | None:
    """The message of one backend.runs log line (text or JSON format), else None."""
    if _JSON_MARK in line:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return str(entry.get("message", "")) if isinstance(entry, dict) else None
    text = line.decode("utf-8", "replace")
    _, mark, message = text.partition(_TEXT_MARK)
    return message.strip() if mark else None

"""Where `up`'s start-up time goes: each service's time to healthy, and the engine's phases as
its log shows them (vLLM's own lines), timed when `up` first sees each line.

Engine phases, each from the previous mark: ``imports`` (the server process imports torch and
vLLM and resolves the config: its first vLLM line), ``engine core`` (vLLM's EngineCore process
starts and imports them again), ``worker`` (a separate worker process, where vLLM runs one: the
same imports a third time), ``model load`` (weights read), ``KV cache`` (profiling and sizing
it), ``warm-up`` (vLLM's "init engine (profile, create kv cache, warmup model)" ends) and
``serving`` (the app's start-up completes). A mark vLLM does not log (another version, another
executor) is left out and its time goes to the next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_MARKS = [
    ("imports", "(MainProcess pid="),
    ("engine core", "(EngineCore pid="),
    ("worker", "(Worker pid="),
    ("model load", "Loading weights took"),
    ("KV cache", "KV cache size"),
    ("warm-up", "init engine (profile, create kv cache, warmup model) took"),
    ("serving", "Application startup complete."),
]


@dataclass
class LogPhases:
    """Watches one log from its current end; ``poll()`` notes when each mark first appears."""

    path: Path
    marks: list[tuple[str, str]]
    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)
    _offset: int = 0
    _pending: str = ""

    def __post_init__(self) -> None:
        try:
            self._offset = self.path.stat().st_size
        except OSError:
            self._offset = 0

    def poll(self) -> None:
        try:
            with self.path.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except OSError:
            return
        self._offset += len(chunk)
        text = self._pending + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._pending = lines.pop()
        now = time.monotonic() - self.started
        for line in lines:
            for name, needle in self.marks:
                if name not in self.seen and needle in line:
                    self.seen[name] = now

    def phases(self) -> list[tuple[str, float]]:
        """(phase, seconds since the previous mark), in the order they happened."""
        out, last = [], 0.0
        for name, at in sorted(self.seen.items(), key=lambda kv: kv[1]):
            out.append((name, at - last))
            last = at
        return out


def format_phases(phases: list[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases)

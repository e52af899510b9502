"""Progress lines for the demo builds: one line when a step starts, one with its time when it
ends, so a first `up` shows where its minutes go."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Say = Callable[[str], None]


def say_flush(line: str) -> None:
    print(line, flush=True)


@contextmanager
def step(say: Say, what: str) -> Iterator[dict[str, float]]:
    """``with step(say, "converting") as timing:``; ``timing["seconds"]`` is set at the end."""
    say(f"==> {what}")
    started = time.perf_counter()
    timing: dict[str, float] = {}
    yield timing
    timing["seconds"] = time.perf_counter() - started
    say(f"    done in {timing['seconds']:.1f} s")

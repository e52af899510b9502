"""Where a streamed run's time to first token goes: per-stage timestamps, asked for with
``X-Playground-Timing: 1`` and answered in the first ``token`` event as ``timing_ms``
(milliseconds since the request reached the backend's outermost middleware).

Stages, in order: ``admitted`` (the admission's one statement), ``route`` (body read and
validated), ``claimed`` (the run id's claim), ``engine_open`` (the engine answered the stream's
headers), ``engine_prompt`` and ``engine_token`` (its ``prompt`` and first ``token`` events
parsed), ``queued`` (our ``token`` frame handed to the response). What the client sees past
``queued`` is the write and the wire; ``python -m bench.stream --breakdown`` puts the two sides
together against the engine's own stream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from common.timing import SCOPE_ADMITTED, SCOPE_ARRIVED

TIMING_HEADER = "x-playground-timing"


class StageClock:
    """Milliseconds since arrival, each stage's first mark only."""

    def __init__(self, arrived: float, admitted: float | None = None) -> None:
        self.arrived = arrived
        self.marks: dict[str, float] = {}
        if admitted is not None:
            self.marks["admitted"] = self._ms(admitted)

    def _ms(self, at: float) -> float:
        return round((at - self.arrived) * 1000, 3)

    def mark(self, stage: str) -> None:
        if stage not in self.marks:
            self.marks[stage] = self._ms(time.perf_counter())

    def as_dict(self) -> dict[str, float]:
        return dict(self.marks)


def clock_for(scope: Mapping[str, Any], headers: Mapping[str, str]) -> StageClock | None:
    """A clock when the request asks for the breakdown (``X-Playground-Timing: 1``)."""
    if headers.get(TIMING_HEADER) != "1":
        return None
    arrived = scope.get(SCOPE_ARRIVED)
    if arrived is None:  # not behind the backend's middleware (a bare test app)
        arrived = time.perf_counter()
    return StageClock(arrived, scope.get(SCOPE_ADMITTED))

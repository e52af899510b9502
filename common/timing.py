"""Milliseconds the way every service reports them."""

from __future__ import annotations

import time


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), rounded to 1 us."""
    return round((time.perf_counter() - start) * 1000, 3)


# ASGI scope keys the backend's outermost middleware stamps (``time.perf_counter()``) on every
# request: when it arrived and when the limits let it through. A streamed run's stage
# breakdown (backend/activations/stages.py) counts from the first.
SCOPE_ARRIVED = "playground.arrived"
SCOPE_ADMITTED = "playground.admitted"

"""Milliseconds the way every service reports them."""

from __future__ import annotations

import time


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), rounded to 1 us."""
    return round((time.perf_counter() - start) * 1000, 3)

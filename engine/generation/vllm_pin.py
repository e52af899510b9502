"""The vLLM and torch builds the engine's patches were written against, and the fingerprint
they check each patched function's source by: a patch installs only where both match
(sampling_patch.py, steering_patch.py, seed_patch.py)."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

PINNED_VLLM = "0.32.0"
PINNED_TORCH = "2.13."


def source_digest(fn: Callable[..., Any] | None) -> str | None:
    if fn is None:
        return None
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):
        return None

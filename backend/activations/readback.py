"""The steered feature read back from a run's stored timeline: its max and mean activation
over the run's OUTPUT positions (a position where it is not in the top-k counts 0)."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from backend.activations.packed import OUTPUT, Timeline


class ReadBackView(TypedDict):
    max: float
    mean: float
    hits: int


def read_back(timeline: Timeline, feature_id: int) -> ReadBackView:
    """Over the output positions only; a run without output reads 0."""
    is_output = (timeline.flags & OUTPUT) != 0
    n_output = int(is_output.sum())
    positions = timeline.feature_positions()
    mask = (timeline.feature_ids == feature_id) & is_output[positions]
    acts = timeline.activations[mask]
    if n_output == 0 or acts.size == 0:
        return {"max": 0.0, "mean": 0.0, "hits": 0}
    # At most one entry per position (a position's features are distinct).
    return {
        "max": float(np.max(acts)),
        "mean": float(np.sum(acts) / n_output),
        "hits": int(acts.size),
    }

"""Pure comparison of two stored timelines, feature by feature (numpy over the packed copies).

Per feature and run: ``max`` and ``mean`` activation and ``hits`` (positions where the feature is
in that position's top-k; the mean is over those positions, as in top-features). A feature that
did not fire in a run counts there as ``max = mean = 0, hits = 0``, so features found in only one
run are compared too. ``delta_* = b - a``. Sorted by ``|delta_max|`` desc, then ``|delta_mean|``
desc, then feature id asc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.activations.derive import Segment, position_mask
from backend.activations.packed import Timeline

# Feature ids below this index dense arrays; an SAE with larger ones has its ids ranked (a sort).
DENSE_IDS = 1 << 20


@dataclass(frozen=True, slots=True)
class FeatureStats:
    """One run's per-feature aggregate over a list of feature ids (zeros where it did not fire)."""

    max: np.ndarray  # f64
    mean: np.ndarray  # f64
    hits: np.ndarray  # i64


@dataclass(frozen=True, slots=True)
class Comparison:
    """Both runs' stats over (the first ``limit`` of) the union of their features, in the
    answer's order."""

    feature_ids: np.ndarray
    a: FeatureStats
    b: FeatureStats
    total: int  # features in the union


def _entries(timeline: Timeline, segment: Segment, include_special: bool):
    mask = position_mask(timeline, segment, include_special)[timeline.feature_positions()]
    return timeline.feature_ids[mask].astype(np.int64), timeline.activations[mask]


def _slots(fa: np.ndarray, fb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(union of the ids ascending, slot of each of ``fa`` in it, slot of each of ``fb``)."""
    top = int(max(fa.max(initial=-1), fb.max(initial=-1))) + 1
    if top > DENSE_IDS:
        union, inverse = np.unique(np.concatenate([fa, fb]), return_inverse=True)
        return union, inverse[: fa.size], inverse[fa.size :]
    present: np.ndarray = np.zeros(top, dtype=bool)
    present[fa] = True
    present[fb] = True
    union = np.flatnonzero(present)
    slot: np.ndarray = np.zeros(top, dtype=np.int64)
    slot[union] = np.arange(union.size)
    return union, slot[fa], slot[fb]


def _stats(slots: np.ndarray, acts: np.ndarray, n: int) -> FeatureStats:
    hits = np.bincount(slots, minlength=n)
    sums = np.bincount(slots, weights=acts, minlength=n)
    mx = np.full(n, -np.inf)
    np.maximum.at(mx, slots, acts)
    mx[hits == 0] = 0.0
    mean = np.divide(sums, hits, out=np.zeros(n), where=hits > 0)
    return FeatureStats(mx, mean, hits)


def compare(
    a: Timeline,
    b: Timeline,
    *,
    segment: Segment = "all",
    include_special: bool = False,
    limit: int | None = None,
) -> Comparison:
    """The union of both runs' features, sorted by the largest absolute change; the first
    ``limit`` only when given (in the same order as in the full list)."""
    fa, acts_a = _entries(a, segment, include_special)
    fb, acts_b = _entries(b, segment, include_special)
    union, slots_a, slots_b = _slots(fa, fb)
    sa, sb = _stats(slots_a, acts_a, union.size), _stats(slots_b, acts_b, union.size)
    dmax, dmean = np.abs(sb.max - sa.max), np.abs(sb.mean - sa.mean)
    candidates = np.arange(union.size)
    if limit is not None and limit < union.size:
        # Only the features that can make the first ``limit`` (ties at the cut included).
        cut = np.partition(dmax, union.size - limit)[union.size - limit]
        candidates = np.flatnonzero(dmax >= cut)
    ranked = candidates[np.lexsort((union[candidates], -dmean[candidates], -dmax[candidates]))]
    if limit is not None:
        ranked = ranked[:limit]

    def take(s: FeatureStats) -> FeatureStats:
        return FeatureStats(s.max[ranked], s.mean[ranked], s.hits[ranked])

    return Comparison(union[ranked], take(sa), take(sb), int(union.size))


def feature_items(comparison: Comparison, labels: dict[int, str]) -> list[dict[str, Any]]:
    """The answer's ``features``."""
    a, b = comparison.a, comparison.b
    return [
        {
            "feature_id": fid,
            "label": labels.get(fid),
            "a": {"max": amax, "mean": amean, "hits": ahits},
            "b": {"max": bmax, "mean": bmean, "hits": bhits},
            "delta_max": bmax - amax,
            "delta_mean": bmean - amean,
        }
        for fid, amax, amean, ahits, bmax, bmean, bhits in zip(
            comparison.feature_ids.tolist(),
            a.max.tolist(),
            a.mean.tolist(),
            a.hits.tolist(),
            b.max.tolist(),
            b.mean.tolist(),
            b.hits.tolist(),
            strict=True,
        )
    ]

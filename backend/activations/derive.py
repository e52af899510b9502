"""Pure derivations over a stored timeline: the rows table and the top-features aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from backend.activations.packed import OUTPUT, SPECIAL, Timeline

Segment = Literal["all", "prompt", "output"]


@dataclass(frozen=True, slots=True)
class RowFilter:
    feature_id: int | None = None
    token_start: int | None = None
    token_end: int | None = None
    rank_max: int | None = None
    segment: Segment = "all"
    limit: int = 200
    offset: int = 0


def _segment_mask(flags: np.ndarray, segment: Segment) -> np.ndarray | None:
    if segment == "all":
        return None
    is_output = (flags & OUTPUT) != 0
    return is_output if segment == "output" else ~is_output


def position_mask(timeline: Timeline, segment: Segment, include_special: bool) -> np.ndarray:
    """The positions an aggregate counts (bool [P]): in ``segment``, special tokens only when
    asked."""
    keep: np.ndarray = np.ones(timeline.n_positions, dtype=bool)
    seg = _segment_mask(timeline.flags, segment)
    if seg is not None:
        keep &= seg
    if not include_special:
        keep &= (timeline.flags & SPECIAL) == 0
    return keep


def rows(
    timeline: Timeline, tokens: list[str] | None, output_start: int, flt: RowFilter
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, the page of rows). ``step`` is the index within the output."""
    positions = timeline.feature_positions()
    ranks = np.arange(timeline.n_features, dtype=np.int64) - timeline.offsets[positions] + 1
    mask: np.ndarray = np.ones(timeline.n_features, dtype=bool)
    if flt.feature_id is not None:
        mask &= timeline.feature_ids == flt.feature_id
    if flt.token_start is not None:
        mask &= positions >= flt.token_start
    if flt.token_end is not None:
        mask &= positions < flt.token_end
    if flt.rank_max is not None:
        mask &= ranks <= flt.rank_max
    seg = _segment_mask(timeline.flags, flt.segment)
    if seg is not None:
        mask &= seg[positions]
    selected = np.flatnonzero(mask)
    page = selected[flt.offset : flt.offset + flt.limit]

    page_pos = positions[page].tolist()
    out_flags = (timeline.flags[positions[page]] & OUTPUT).tolist()
    token_ids = timeline.token_ids[positions[page]].tolist()
    result = [
        {
            "step": (pos - output_start) if is_out else None,
            "token_position": pos,
            "feature_id": fid,
            "activation_value": act,
            "rank": rank,
            "token_id": tid,
            "token": tokens[pos] if tokens is not None else None,
        }
        for pos, is_out, fid, act, rank, tid in zip(
            page_pos,
            out_flags,
            timeline.feature_ids[page].tolist(),
            timeline.activations[page].tolist(),
            ranks[page].tolist(),
            token_ids,
            strict=True,
        )
    ]
    return len(selected), result


def top_features(
    timeline: Timeline, *, segment: Segment = "all", include_special: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """Per feature: max activation (and where), hits (positions where it is in the top-k),
    mean activation over those hits. Sorted by max desc, hits desc, feature id asc."""
    positions = timeline.feature_positions()
    mask = position_mask(timeline, segment, include_special)[positions]
    fids = timeline.feature_ids[mask]
    if fids.size == 0:
        return []
    acts = timeline.activations[mask]
    pos = positions[mask]

    # Group by feature (an unstable SIMD sort is several times faster than lexsort here).
    order = np.argsort(fids)
    fids, acts, pos = fids[order], acts[order], pos[order]
    starts = np.flatnonzero(np.r_[True, fids[1:] != fids[:-1]])
    hits = np.diff(np.r_[starts, fids.size])
    max_act = np.maximum.reduceat(acts, starts)
    mean_act = np.add.reduceat(acts, starts) / hits
    # Earliest position where each feature reaches its max.
    at_max = acts == np.repeat(max_act, hits)
    max_pos = np.minimum.reduceat(np.where(at_max, pos, np.iinfo(np.int64).max), starts)
    group_fids = fids[starts]

    # Only groups that can make the first ``limit`` (ties at the cut included) are sorted.
    if limit < starts.size:
        cut = np.partition(max_act, starts.size - limit)[starts.size - limit]
        candidates = np.flatnonzero(max_act >= cut)
    else:
        candidates = np.arange(starts.size)
    ranked = np.lexsort((group_fids[candidates], -hits[candidates], -max_act[candidates]))
    best = candidates[ranked][:limit]
    max_pos = max_pos[best]
    return [
        {
            "feature_id": fid,
            "max_activation": mx,
            "hits": h,
            "mean_activation": mean,
            "max_position": mp,
            "max_token_id": tid,
        }
        for fid, mx, h, mean, mp, tid in zip(
            group_fids[best].tolist(),
            max_act[best].tolist(),
            hits[best].tolist(),
            mean_act[best].tolist(),
            max_pos.tolist(),
            timeline.token_ids[max_pos].tolist(),
            strict=True,
        )
    ]

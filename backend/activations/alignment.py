"""Two runs' token sequences aligned, and the feature change at each aligned position.

The alignment is ``difflib.SequenceMatcher(autojunk=False)``'s opcodes over the token ids, with
the identical prefix and suffix taken off first (numpy, O(n)): two runs of one prompt share
their whole prompt, so difflib only sees the answers. ``autojunk`` is off because its
popularity heuristic drops frequent tokens (" the", ",") from matching. difflib is quadratic
in the worst case, so a differing middle longer than ``MAX_DIFF_CELLS`` (len a x len b) is
answered as one ``replace`` and the alignment marked ``coarse``.

Aligned positions are those of ``equal`` opcodes (the same token at ``a_position`` and
``b_position``). At each, a feature ``appeared`` (in b's top-k, not in a's), ``vanished`` (in
a's, not in b's) or ``changed`` (in both, ``|b - a| > threshold``); positions without any are
left out, and at most ``MAX_CHANGE_ITEMS`` features in all are listed (``truncated`` then).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.activations.packed import Timeline

MAX_DIFF_CELLS = 4096 * 4096
MAX_CHANGE_ITEMS = 10_000
_SHIFT = np.int64(32)


@dataclass(frozen=True, slots=True)
class Opcodes:
    prefix: int  # leading positions with the same token in both
    opcodes: list[dict[str, Any]]
    coarse: bool


def _opcode(tag: str, i1: int, i2: int, j1: int, j2: int) -> dict[str, Any]:
    return {"tag": tag, "a_start": i1, "a_end": i2, "b_start": j1, "b_end": j2}


def align(a: np.ndarray, b: np.ndarray) -> Opcodes:
    """Opcodes covering both token id sequences, in order (difflib's tags and spans)."""
    na, nb = len(a), len(b)
    n = min(na, nb)
    differ = np.flatnonzero(a[:n] != b[:n])
    prefix = int(differ[0]) if differ.size else n
    rest = min(na, nb) - prefix
    tail_differ = np.flatnonzero(a[na - rest :][::-1] != b[nb - rest :][::-1]) if rest else []
    suffix = int(tail_differ[0]) if len(tail_differ) else rest
    ea, eb = na - suffix, nb - suffix  # the differing middle: a[prefix:ea], b[prefix:eb]
    ops: list[dict[str, Any]] = []
    if prefix:
        ops.append(_opcode("equal", 0, prefix, 0, prefix))
    coarse = False
    if ea > prefix or eb > prefix:
        if (ea - prefix) * (eb - prefix) > MAX_DIFF_CELLS:
            coarse = True
            tag = (
                "replace" if ea > prefix and eb > prefix else "delete" if ea > prefix else "insert"
            )
            ops.append(_opcode(tag, prefix, ea, prefix, eb))
        else:
            matcher = difflib.SequenceMatcher(
                None, a[prefix:ea].tolist(), b[prefix:eb].tolist(), autojunk=False
            )
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                ops.append(_opcode(tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix))
    if suffix:
        ops.append(_opcode("equal", ea, na, eb, nb))
    return Opcodes(prefix, ops, coarse)


def aligned_pairs(opcodes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(a positions, b positions) of every ``equal`` opcode, in order."""
    spans = [op for op in opcodes if op["tag"] == "equal"]
    if not spans:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pa = np.concatenate([np.arange(op["a_start"], op["a_end"]) for op in spans])
    pb = np.concatenate([np.arange(op["b_start"], op["b_end"]) for op in spans])
    return pa.astype(np.int64), pb.astype(np.int64)


def _entries_at(timeline: Timeline, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair index, entry index) of every feature entry at ``positions`` (pair i = positions[i])."""
    starts = timeline.offsets[positions]
    counts = timeline.offsets[positions + 1] - starts
    pair: np.ndarray = np.repeat(np.arange(len(positions), dtype=np.int64), counts)
    first: np.ndarray = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return pair, first + np.arange(int(counts.sum()), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class PositionChanges:
    positions: list[dict[str, Any]]
    truncated: bool


def position_changes(
    a: Timeline, b: Timeline, pa: np.ndarray, pb: np.ndarray, threshold: float
) -> PositionChanges:
    """The feature changes at aligned positions ``pa[i]`` (in a) / ``pb[i]`` (in b)."""
    pair_a, ia = _entries_at(a, pa)
    pair_b, ib = _entries_at(b, pb)
    key_a = (pair_a << _SHIFT) | a.feature_ids[ia].astype(np.int64)
    key_b = (pair_b << _SHIFT) | b.feature_ids[ib].astype(np.int64)
    # Feature ids are unique within a position's top-k, so the keys are unique on each side.
    _, in_a, in_b = np.intersect1d(key_a, key_b, assume_unique=True, return_indices=True)
    only_a = np.ones(key_a.size, dtype=bool)
    only_a[in_a] = False
    only_b = np.ones(key_b.size, dtype=bool)
    only_b[in_b] = False
    act_a, act_b = a.activations[ia], b.activations[ib]
    moved = np.abs(act_b[in_b] - act_a[in_a]) > threshold
    both_a, both_b = in_a[moved], in_b[moved]

    # Events: (pair, kind 0 appeared / 1 vanished / 2 changed, feature, a, b), by pair then kind.
    pair = np.concatenate([pair_b[only_b], pair_a[only_a], pair_a[both_a]])
    kind = np.concatenate(
        [
            np.zeros(int(only_b.sum()), np.int64),
            np.ones(int(only_a.sum()), np.int64),
            np.full(both_a.size, 2, np.int64),
        ]
    )
    fid = np.concatenate([key_b[only_b], key_a[only_a], key_a[both_a]]) & 0xFFFFFFFF
    val_a = np.concatenate([np.zeros(int(only_b.sum())), act_a[only_a], act_a[both_a]])
    val_b = np.concatenate([act_b[only_b], np.zeros(int(only_a.sum())), act_b[both_b]])
    order = np.lexsort((fid, kind, pair))
    truncated = order.size > MAX_CHANGE_ITEMS
    if truncated:
        # Whole positions only: stop before the position that crosses the cap.
        last = pair[order[MAX_CHANGE_ITEMS]]
        order = order[pair[order] < last]
    return PositionChanges(_grouped(pair, kind, fid, val_a, val_b, order, pa, pb), truncated)


def _grouped(pair, kind, fid, val_a, val_b, order, pa, pb) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current = -1
    entry: dict[str, Any] = {}
    for p, k, f, va, vb in zip(
        pair[order].tolist(),
        kind[order].tolist(),
        fid[order].tolist(),
        val_a[order].tolist(),
        val_b[order].tolist(),
        strict=True,
    ):
        if p != current:
            current = p
            entry = {
                "a_position": int(pa[p]),
                "b_position": int(pb[p]),
                "appeared": [],
                "vanished": [],
                "changed": [],
            }
            out.append(entry)
        if k == 0:
            entry["appeared"].append({"feature_id": f, "activation": vb})
        elif k == 1:
            entry["vanished"].append({"feature_id": f, "activation": va})
        else:
            entry["changed"].append({"feature_id": f, "a": va, "b": vb})
    return out

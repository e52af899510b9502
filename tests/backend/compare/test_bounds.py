"""The comparison's bounds, on packed timelines (no database): a differing middle too long to
diff is one coarse ``replace``; too many feature changes stop at a whole position, marked
``truncated``; feature ids too large to index densely are ranked instead, same answer."""

from __future__ import annotations

import random

import numpy as np

from backend.activations import alignment, compare, packed
from tests.backend.compare.runs import BOS, timeline


def packed_run(ids: list[int], seed: int, pool=range(40)) -> packed.Timeline:
    return packed.from_entries(timeline(ids, len(ids) // 2, seed=seed, pool=pool))[0]


def op(tag: str, i1: int, i2: int, j1: int, j2: int) -> dict:
    return {"tag": tag, "a_start": i1, "a_end": i2, "b_start": j1, "b_end": j2}


def test_a_long_middle_is_one_coarse_replace(monkeypatch):
    a = np.array([BOS, 1, 2, 3, 4, 5, 9, 9])
    b = np.array([BOS, 1, 7, 3, 4, 8, 9, 9])
    fine = alignment.align(a, b)
    assert not fine.coarse and fine.prefix == 2
    assert fine.opcodes == [
        op("equal", 0, 2, 0, 2),
        op("replace", 2, 3, 2, 3),
        op("equal", 3, 5, 3, 5),
        op("replace", 5, 6, 5, 6),
        op("equal", 6, 8, 6, 8),
    ]
    monkeypatch.setattr(alignment, "MAX_DIFF_CELLS", 10)  # the middle is 4 x 4
    coarse = alignment.align(a, b)
    assert coarse.coarse and coarse.prefix == 2
    assert coarse.opcodes == [
        op("equal", 0, 2, 0, 2),
        op("replace", 2, 6, 2, 6),
        op("equal", 6, 8, 6, 8),
    ]
    # Only one side longer: a coarse insert (or delete), never a replace of nothing.
    monkeypatch.setattr(alignment, "MAX_DIFF_CELLS", -1)
    longer = np.array([BOS, 1, 2, 3, 4, 5, 6, 7, 9, 9])
    assert alignment.align(a[:2], longer).coarse
    assert alignment.align(a[:2], longer).opcodes == [
        op("equal", 0, 2, 0, 2),
        op("insert", 2, 2, 2, 10),
    ]
    assert alignment.align(np.array([BOS, 5, 5, 9]), np.array([BOS, 9])).opcodes == [
        op("equal", 0, 1, 0, 1),
        op("delete", 1, 3, 1, 1),
        op("equal", 3, 4, 1, 2),
    ]


def test_too_many_changes_stop_at_a_whole_position(monkeypatch):
    rng = random.Random(1)
    ids = [BOS] + [rng.randrange(100, 200) for _ in range(60)]
    a, b = packed_run(ids, 1), packed_run(ids, 2)
    pa = pb = np.arange(len(ids), dtype=np.int64)
    full = alignment.position_changes(a, b, pa, pb, 1.0)
    assert not full.truncated and len(full.positions) > 10

    def size(p: dict) -> int:
        return len(p["appeared"]) + len(p["vanished"]) + len(p["changed"])

    monkeypatch.setattr(alignment, "MAX_CHANGE_ITEMS", 25)
    cut = alignment.position_changes(a, b, pa, pb, 1.0)
    assert cut.truncated
    assert cut.positions == full.positions[: len(cut.positions)]
    assert sum(map(size, cut.positions)) <= 25
    assert sum(map(size, full.positions[: len(cut.positions) + 1])) > 25


def test_large_feature_ids_are_ranked_not_indexed(monkeypatch):
    ids = [BOS, 101, 102, 103, 104, 105, 106, 107]
    a = packed_run(ids, 3, pool=range(2**31 - 60, 2**31 - 1))
    b = packed_run(ids, 4, pool=range(2**31 - 60, 2**31 - 1))
    ranked = compare.compare(a, b, limit=10)
    assert ranked.feature_ids.max() > compare.DENSE_IDS
    monkeypatch.setattr(compare, "DENSE_IDS", 2**32)  # the dense path, for reference
    small_a = packed_run(ids, 3, pool=range(0, 59))
    small_b = packed_run(ids, 4, pool=range(0, 59))
    dense = compare.compare(small_a, small_b, limit=10)
    monkeypatch.setattr(compare, "DENSE_IDS", 1)  # the ranked path on the same small ids
    sparse = compare.compare(small_a, small_b, limit=10)
    assert dense.feature_ids.tolist() == sparse.feature_ids.tolist()
    for side in ("a", "b"):
        d, s = getattr(dense, side), getattr(sparse, side)
        assert d.max.tolist() == s.max.tolist() and d.hits.tolist() == s.hits.tolist()
        assert np.allclose(d.mean, s.mean)
    assert dense.total == sparse.total

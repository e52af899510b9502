"""Folding many runs at once, in memory, straight into empty per-feature tables by COPY: what
the incremental fold (``fold.py``) would leave after folding them one batch at a time (a test
compares the two). The benchmark seeder uses it for 100,000 runs, where batches of upserts
would take most of an hour on a small machine.

Request ids must be added in ascending order (ties on a max activation rank by request id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import numpy as np

from backend.activations.aggregate import N_BINS, RunFeatures
from backend.db import fold_sql
from backend.features import fold
from bench import feature_seed_sql


@dataclass
class BulkFold:
    sae_key: int
    capacity: int = field(default_factory=lambda: fold.CAPACITY)
    runs_total: int = 0
    positions_total: int = 0
    _fired: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _request_ids: list[str] = field(default_factory=list)
    _versions: list[int] = field(default_factory=list)
    # Leaderboard candidates, kept to the best ``capacity`` per feature at each merge.
    _top: tuple[np.ndarray, ...] = field(
        default_factory=lambda: (
            np.zeros(0, np.int64),  # feature id
            np.zeros(0, np.float32),  # max
            np.zeros(0, np.int64),  # run index (ascending request id)
            np.zeros(0, np.int64),  # max position
        )
    )
    _pending: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    _pending_hist: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    _members: list[tuple] = field(default_factory=list)

    def add(self, request_id: str, version: int, run: RunFeatures) -> None:
        if self._request_ids and request_id <= self._request_ids[-1]:
            raise ValueError("add runs in ascending request_id order")
        index = len(self._request_ids)
        self._request_ids.append(request_id)
        self._versions.append(version)
        self.runs_total += 1
        self.positions_total += run.n_positions
        self._pending.append(
            (
                run.feature_ids.astype(np.int64),
                run.max_acts,
                np.full(run.n_features, index, np.int64),
                run.max_pos.astype(np.int64),
            )
        )
        self._pending_hist.append(
            (run.hist_fids.astype(np.int64) * N_BINS + run.hist_bins, run.hist_counts)
        )
        self._members.append(
            (request_id, version, self.sae_key, run.keys().tolist(), run.max_acts.tolist())
        )
        if len(self._pending) >= 2000:
            self._merge_top()

    def _merge_top(self) -> None:
        if not self._pending:
            return
        self._fired = _accumulate(self._fired, np.concatenate([p[0] for p in self._pending]), None)
        self._hist = _accumulate(
            self._hist,
            np.concatenate([k for k, _ in self._pending_hist]),
            np.concatenate([c for _, c in self._pending_hist]),
        )
        self._pending_hist = []
        parts = list(zip(*self._pending, strict=True))
        fids, acts, runs, pos = (
            np.concatenate([self._top[i], *parts[i]]) for i in range(len(self._top))
        )
        self._pending = []
        # Per feature: max desc, then request id desc (= run index desc).
        order = np.lexsort((-runs, -acts.astype(np.float64), fids))
        fids, acts, runs, pos = fids[order], acts[order], runs[order], pos[order]
        starts = np.flatnonzero(np.r_[True, fids[1:] != fids[:-1]])
        rank = np.arange(fids.size) - np.repeat(starts, np.diff(np.r_[starts, fids.size]))
        keep = rank < self.capacity
        self._top = (fids[keep], acts[keep], runs[keep], pos[keep])

    def most_and_least_fired(self) -> tuple[int, int]:
        """The feature that fired in the most runs, and one that fired in the fewest (> 0)."""
        self._merge_top()
        fired = np.flatnonzero(self._fired)
        return int(np.argmax(self._fired)), int(fired[np.argmin(self._fired[fired])])

    def take_members(self) -> list[tuple]:
        """Member rows gathered since the last call (COPY them as they come: they are big)."""
        rows, self._members = self._members, []
        return rows

    async def write(self, conn: asyncpg.Connection) -> None:
        """COPY every derived table (they must be empty for this SAE) and set the totals."""
        self._merge_top()
        await fold_sql.copy_members(conn, self.take_members())
        fired_ids = np.flatnonzero(self._fired)
        fids, acts, runs, pos = self._top
        starts = np.flatnonzero(np.r_[True, fids[1:] != fids[:-1]]) if fids.size else fids
        counts = np.diff(np.r_[starts, fids.size]).astype(np.int64)
        board = {int(f): int(c) for f, c in zip(fids[starts], counts, strict=True)}
        last = {
            int(f): int(s + c - 1) for f, s, c in zip(fids[starts], starts, counts, strict=True)
        }
        stats = []
        for f in fired_ids.tolist():
            n = board.get(f, 0)
            full = self._fired[f] > n
            at = last.get(f)
            floor = (float(acts[at]), self._request_ids[runs[at]], self._versions[runs[at]])
            stats.append(
                (
                    self.sae_key,
                    f,
                    int(self._fired[f]),
                    n,
                    bool(full),
                    *(floor if full else (None,) * 3),
                )
            )
        await feature_seed_sql.copy_rows(
            conn,
            "feature_stats",
            [
                "sae_key",
                "feature_id",
                "runs_fired",
                "top_count",
                "top_full",
                "floor_act",
                "floor_request_id",
                "floor_version",
            ],
            stats,
        )
        # Generators: COPY streams them (the 100k-run board is ~4M rows).
        keys = np.flatnonzero(self._hist)
        await feature_seed_sql.copy_rows(
            conn,
            "feature_hist",
            ["sae_key", "feature_id", "bin", "count"],
            ((self.sae_key, int(k // N_BINS), int(k % N_BINS), int(self._hist[k])) for k in keys),
        )
        request_ids, versions = self._request_ids, self._versions
        await feature_seed_sql.copy_rows(
            conn,
            "feature_top_runs",
            ["sae_key", "feature_id", "max_act", "request_id", "version", "max_position"],
            (
                (self.sae_key, int(f), float(a), request_ids[r], versions[r], int(p))
                for f, a, r, p in zip(fids, acts, runs, pos, strict=True)
            ),
        )
        await feature_seed_sql.set_totals(conn, self.sae_key, self.runs_total, self.positions_total)


def _accumulate(into: np.ndarray, keys: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if keys.size == 0:
        return into
    sums = np.bincount(keys, weights=weights, minlength=into.size)
    sums = np.rint(sums).astype(np.int64) if weights is not None else sums.astype(np.int64)
    sums[: into.size] += into
    return sums

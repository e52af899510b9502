"""What the fold has not taken in yet, as readers add it: queued run versions count in, queued
removals of folded versions count out. Read in the same snapshot as the folded indexes, the
sum is exact at any moment."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import numpy as np

from backend.activations import aggregate
from backend.activations.aggregate import N_BINS
from backend.db import feature_reads
from backend.features.fold import QueuedRun, queued

# Readers merge at most this many queued items per SAE; past that (a backlog after a
# migration, a fold that is not running) answers say they are not complete.
MERGE_LIMIT = 512


@dataclass(frozen=True, slots=True)
class Pending:
    adds: list[QueuedRun]
    removals: list[QueuedRun]
    complete: bool


async def load(conn: asyncpg.Connection, sae_id: str | None, layer: int | None) -> Pending:
    adds = await feature_reads.pending_runs(conn, sae_id, layer, MERGE_LIMIT + 1)
    removals = await feature_reads.pending_removals(conn, sae_id, layer, MERGE_LIMIT + 1)
    complete = len(adds) <= MERGE_LIMIT and len(removals) <= MERGE_LIMIT
    return Pending(
        adds=[queued(r) for r in adds[:MERGE_LIMIT]],
        removals=[queued(r) for r in removals[:MERGE_LIMIT]],
        complete=complete,
    )


@dataclass(frozen=True, slots=True)
class FeatureDelta:
    """The queued change to one feature's numbers (and to its SAE's totals)."""

    runs_total: int
    positions_total: int
    runs_fired: int
    hist: np.ndarray  # i64 [N_BINS]


def _of(runs: list[QueuedRun], sae_id: str, layer: int) -> list[QueuedRun]:
    return [q for q in runs if q.sae_id == sae_id and q.sae_layer == layer]


def feature_delta(p: Pending, sae_id: str, layer: int, feature_id: int) -> FeatureDelta:
    runs_total = positions_total = runs_fired = 0
    hist: np.ndarray = np.zeros(N_BINS, dtype=np.int64)
    for sign, runs in ((1, p.adds), (-1, p.removals)):
        for q in _of(runs, sae_id, layer):
            runs_total += sign
            positions_total += sign * q.run.n_positions
            hit = aggregate.lookup(q.run, feature_id)
            if hit is not None:
                runs_fired += sign
                hist += sign * hit.hist
    return FeatureDelta(runs_total, positions_total, runs_fired, hist)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A queued run in which the feature fired."""

    request_id: str
    version: int
    max_act: float
    max_pos: int


def candidates(p: Pending, sae_id: str, layer: int, feature_id: int) -> list[Candidate]:
    out = []
    for q in _of(p.adds, sae_id, layer):
        hit = aggregate.lookup(q.run, feature_id)
        if hit is not None:
            out.append(Candidate(q.request_id, q.version, hit.max_act, hit.max_pos))
    return out

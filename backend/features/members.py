"""Folded runs below a feature's leaderboard, from the GIN-indexed member rows the fold writes:
best first, one lookup per histogram bin (the fold's refill and the explorer's deep pages), and
where each run's max of a feature is (from the runs' aggregates)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import numpy as np

from backend.activations import aggregate
from backend.activations.aggregate import KEY_BINS, N_BINS
from backend.db import feature_reads


@dataclass(frozen=True, slots=True)
class Ranked:
    """A folded run's standing for one feature."""

    request_id: str
    version: int
    max_act: float


async def runs_below(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_id: int,
    before: tuple[float, str] | None,
    limit: int,
) -> list[Ranked]:
    """Folded current runs of a feature strictly below ``before`` (max, request_id), best
    first, from the member rows: one GIN lookup per histogram bin, from the bin of ``before``
    down, until ``limit`` are found."""
    top_bin = N_BINS - 1 if before is None else int(aggregate.hist_bins(np.array([before[0]]))[0])
    found: list[Ranked] = []
    for b in range(top_bin, -1, -1):
        rows = await feature_reads.members_in_bin(
            conn, sae_key, feature_id * KEY_BINS + b, limit - len(found), before
        )
        found += [Ranked(r["request_id"], r["version"], r["max_act"]) for r in rows]
        if len(found) >= limit:
            break
    return found


async def positions_of(
    conn: asyncpg.Connection, run_ids: list[str], feature_id: int
) -> dict[str, int]:
    """Where each run's max of ``feature_id`` is (from the runs' aggregates)."""
    if not run_ids:
        return {}
    out = {}
    for r in await feature_reads.run_features(conn, run_ids):
        hit = aggregate.lookup(aggregate.decode(r["data"], r["n_positions"]), feature_id)
        if hit is not None:
            out[r["request_id"]] = hit.max_pos
    return out

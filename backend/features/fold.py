"""The fold: queued run aggregates -> the per-feature indexes, in batches, off the run path.

A run's write stores one aggregate row (``activation_run_features``) and queues it; touching a
row per distinct feature in that statement costs several times the whole run write (measured,
docs/backend.md). The fold takes queued versions (and queued removals of folded versions that
were replaced or deleted), sums their signed contributions into per-feature counters and
histograms, maintains each feature's bounded leaderboard, and writes the GIN-indexed member
row that pages below the leaderboard use. One transaction per batch, one fold at a time (an
advisory lock), so the indexes always equal "every folded version"; readers add what is still
queued (``pending.py``), so answers are exact whether or not the fold has caught up.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
import numpy as np

from backend.activations import aggregate
from backend.activations.aggregate import HIST_EDGES, N_BINS, RunFeatures
from backend.db import board_sql, fold_sql
from backend.features.members import positions_of, runs_below

logger = logging.getLogger(__name__)

# Each feature's leaderboard holds its best CAPACITY runs; deletions may thin it, and below
# LOW_WATER the fold refills it from the member rows.
CAPACITY = 128
LOW_WATER = 64
REFILL_PER_BATCH = 8


@dataclass(frozen=True, slots=True)
class QueuedRun:
    request_id: str
    version: int
    sae_id: str
    sae_layer: int
    run: RunFeatures


def queued(record: asyncpg.Record) -> QueuedRun:
    return QueuedRun(
        record["request_id"],
        record["version"],
        record["sae_id"],
        record["sae_layer"],
        aggregate.decode(record["data"], record["n_positions"]),
    )


@dataclass(frozen=True, slots=True)
class Contributions:
    """Signed sums over a batch, keyed by sae_key."""

    total_keys: np.ndarray
    total_runs: np.ndarray
    total_positions: np.ndarray
    stat_keys: np.ndarray
    stat_fids: np.ndarray
    stat_runs: np.ndarray
    hist_keys: np.ndarray
    hist_fids: np.ndarray
    hist_bins: np.ndarray
    hist_counts: np.ndarray


def contributions(items: list[tuple[int, RunFeatures, int]]) -> Contributions:
    """Sum (sae_key, run, sign) contributions; zero sums are dropped."""
    saes = np.array([k for k, _, _ in items], dtype=np.int64)
    signs = np.array([s for _, _, s in items], dtype=np.int64)
    positions = np.array([r.n_positions for _, r, _ in items], dtype=np.int64)
    total_keys, inv = np.unique(saes, return_inverse=True)
    total_runs = np.zeros(total_keys.size, dtype=np.int64)
    total_positions = np.zeros(total_keys.size, dtype=np.int64)
    np.add.at(total_runs, inv, signs)
    np.add.at(total_positions, inv, signs * positions)

    def grouped(per_run: list[np.ndarray], weights: list[np.ndarray]) -> tuple:
        if not per_run:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = np.concatenate(per_run)
        vals = np.concatenate(weights)
        uniq, where = np.unique(keys, return_inverse=True)
        sums = np.zeros(uniq.size, dtype=np.int64)
        np.add.at(sums, where, vals)
        keep = sums != 0
        return uniq[keep], sums[keep]

    stat_k, stat_v = grouped(
        [(k << 32) | r.feature_ids.astype(np.int64) for k, r, _ in items],
        [np.full(r.n_features, s, dtype=np.int64) for _, r, s in items],
    )
    hist_k, hist_v = grouped(
        [(k << 32) | (r.hist_fids.astype(np.int64) * N_BINS + r.hist_bins) for k, r, _ in items],
        [r.hist_counts.astype(np.int64) * s for _, r, s in items],
    )
    low = hist_k & 0xFFFFFFFF
    return Contributions(
        total_keys=total_keys,
        total_runs=total_runs,
        total_positions=total_positions,
        stat_keys=stat_k >> 32,
        stat_fids=stat_k & 0xFFFFFFFF,
        stat_runs=stat_v,
        hist_keys=hist_k >> 32,
        hist_fids=low // N_BINS,
        hist_bins=low % N_BINS,
        hist_counts=hist_v,
    )


async def apply_counts(conn: asyncpg.Connection, c: Contributions) -> None:
    await fold_sql.add_totals(
        conn, c.total_keys.tolist(), c.total_runs.tolist(), c.total_positions.tolist()
    )
    await fold_sql.add_stats(conn, c.stat_keys.tolist(), c.stat_fids.tolist(), c.stat_runs.tolist())
    await fold_sql.add_hist(
        conn,
        c.hist_keys.tolist(),
        c.hist_fids.tolist(),
        c.hist_bins.tolist(),
        c.hist_counts.tolist(),
    )


def member_record(run: QueuedRun, sae_key: int) -> tuple:
    return (
        run.request_id,
        run.version,
        sae_key,
        run.run.keys().tolist(),
        run.run.max_acts.tolist(),
    )


@dataclass(frozen=True, slots=True)
class FoldResult:
    runs: int
    removals: int
    busy: bool = False

    @property
    def done(self) -> int:
        return self.runs + self.removals


@dataclass(frozen=True, slots=True)
class Candidates:
    """Every (run, feature) of a batch's new versions, as parallel lists for the leaderboards."""

    sae_keys: list[int]
    feature_ids: list[int]
    max_acts: list[float]
    request_ids: list[str]
    versions: list[int]
    positions: list[int]


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Everything a batch writes, computed off the event loop (numpy, list building)."""

    adds: list[QueuedRun]
    removals: list[QueuedRun]
    counts: Contributions
    members: list[tuple]
    candidates: Candidates


def plan_batch(
    add_rows: list[asyncpg.Record],
    removal_rows: list[asyncpg.Record],
    keys: dict[tuple[str, int], int],
) -> BatchPlan:
    adds = [queued(r) for r in add_rows]
    removals = [queued(r) for r in removal_rows]
    items = [(keys[(q.sae_id, q.sae_layer)], q.run, 1) for q in adds]
    items += [(keys[(q.sae_id, q.sae_layer)], q.run, -1) for q in removals]
    runs = [q.run for q in adds]
    sizes = [r.n_features for r in runs]
    candidates = Candidates([], [], [], [], [], [])
    if adds:
        candidates = Candidates(
            np.repeat([keys[(q.sae_id, q.sae_layer)] for q in adds], sizes).tolist(),
            np.concatenate([r.feature_ids for r in runs]).tolist(),
            np.concatenate([r.max_acts for r in runs]).tolist(),
            np.repeat([q.request_id for q in adds], sizes).tolist(),
            np.repeat([q.version for q in adds], sizes).tolist(),
            np.concatenate([r.max_pos for r in runs]).tolist(),
        )
    return BatchPlan(
        adds=adds,
        removals=removals,
        counts=contributions(items),
        members=[member_record(q, keys[(q.sae_id, q.sae_layer)]) for q in adds],
        candidates=candidates,
    )


async def fold_batch(conn: asyncpg.Connection, limit: int) -> FoldResult:
    """Fold up to ``limit`` queued runs and ``limit`` queued removals in one transaction."""
    async with conn.transaction():
        if not await fold_sql.try_fold_lock(conn):
            return FoldResult(0, 0, busy=True)
        await fold_sql.cancel_unfolded_removals(conn)
        add_rows = await fold_sql.claim_pending_runs(conn, limit)
        removal_rows = await fold_sql.claim_pending_removals(conn, limit)
        if not add_rows and not removal_rows:
            return FoldResult(0, 0)
        saes = {(r["sae_id"], r["sae_layer"]) for r in [*add_rows, *removal_rows]}
        keys = await fold_sql.sae_keys(conn, sorted(saes), HIST_EDGES)
        # The CPU part in a thread: the backend's requests share this event loop.
        plan = await asyncio.to_thread(plan_batch, add_rows, removal_rows, keys)
        await apply_counts(conn, plan.counts)

        gone_ids = [q.request_id for q in plan.removals]
        gone_versions = [q.version for q in plan.removals]
        await fold_sql.remove_members(conn, gone_ids, gone_versions)
        await fold_sql.copy_members(conn, plan.members)
        thinned = await board_sql.remove_top_runs(conn, gone_ids, gone_versions)
        if plan.adds:
            c = plan.candidates
            over = await board_sql.add_top_candidates(
                conn,
                c.sae_keys,
                c.feature_ids,
                c.max_acts,
                c.request_ids,
                c.versions,
                c.positions,
                CAPACITY,
            )
            if over:
                await board_sql.trim_top_runs(
                    conn, [o["sae_key"] for o in over], [o["feature_id"] for o in over], CAPACITY
                )
        low = [
            (t["sae_key"], t["feature_id"])
            for t in thinned
            if t["top_full"] and t["top_count"] < LOW_WATER
        ]
        if low:
            for board in await board_sql.boards_to_refill(
                conn, [k for k, _ in low], [f for _, f in low], LOW_WATER, REFILL_PER_BATCH
            ):
                await refill(conn, board)
        await fold_sql.delete_claimed(
            conn,
            [q.request_id for q in plan.adds],
            [q.version for q in plan.adds],
            [r["id"] for r in removal_rows],
        )
    return FoldResult(len(plan.adds), len(plan.removals))


async def refill(conn: asyncpg.Connection, board: asyncpg.Record) -> None:
    """Deletions thinned a full leaderboard: take it back to CAPACITY from below its floor."""
    sae_key, fid = board["sae_key"], board["feature_id"]
    want = CAPACITY - board["top_count"]
    floor = (board["floor_act"], board["floor_request_id"])
    more = await runs_below(conn, sae_key, fid, floor, want)
    positions = await positions_of(conn, [r.request_id for r in more], fid)
    await board_sql.insert_top_runs(
        conn,
        [
            (sae_key, fid, r.max_act, r.request_id, r.version, positions.get(r.request_id, 0))
            for r in more
        ],
    )
    new_floor = (more[-1].max_act, more[-1].request_id, more[-1].version) if more else None
    if len(more) < want:
        new_floor = None  # every folded run of this feature is on the board now
    await board_sql.lower_floor(conn, sae_key, fid, len(more), new_floor)


async def fold_all(pool: asyncpg.Pool, batch: int = 64) -> int:
    """Fold until both queues are empty (tests, the CLI); answers how many were folded."""
    total = 0
    async with pool.acquire() as conn:
        while True:
            result = await fold_batch(conn, batch)
            if result.busy:
                await asyncio.sleep(0.05)
                continue
            if result.done == 0:
                return total
            total += result.done

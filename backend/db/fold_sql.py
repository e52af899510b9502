"""SQL of the feature fold (migration 0016): the queue claims and the per-feature upserts
the fold (backend/features/fold.py) runs under one advisory lock; its leaderboards' SQL is
board_sql.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

FOLD_LOCK = 0x0F0_1D_0016  # pg advisory lock: one fold at a time across backend processes


async def try_fold_lock(conn: asyncpg.Connection) -> bool:
    """Inside a transaction: take the fold's advisory lock, or answer False at once."""
    return await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FOLD_LOCK)


async def claim_pending_runs(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Queued run versions with their aggregates, oldest first, locked until commit."""
    return await conn.fetch(
        """
SELECT q.request_id, q.version, a.sae_id, a.sae_layer, a.n_positions, a.data
FROM feature_pending_runs q
JOIN activation_run_features a ON a.request_id = q.request_id AND a.version = q.version
ORDER BY q.version
LIMIT $1
FOR UPDATE OF q SKIP LOCKED
""",
        limit,
    )


async def cancel_unfolded_removals(conn: asyncpg.Connection) -> int:
    """A removal queued while its version was being folded, whose fold then rolled back: the
    version is still queued too. The pair cancels out; answers how many pairs."""
    return await conn.fetchval(
        """
WITH pairs AS (
  SELECT q.request_id, q.version, r.id
  FROM feature_pending_runs q
  JOIN feature_pending_removals r ON r.request_id = q.request_id AND r.version = q.version
  FOR UPDATE OF q, r SKIP LOCKED
), runs AS (
  DELETE FROM feature_pending_runs q USING pairs p
  WHERE q.request_id = p.request_id AND q.version = p.version
)
, removals AS (DELETE FROM feature_pending_removals r USING pairs p WHERE r.id = p.id RETURNING 1)
SELECT count(*) FROM removals
"""
    )


async def claim_pending_removals(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
SELECT id, request_id, version, sae_id, sae_layer, n_positions, data
FROM feature_pending_removals
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
""",
        limit,
    )


async def delete_claimed(
    conn: asyncpg.Connection,
    run_ids: Sequence[str],
    versions: Sequence[int],
    removal_ids: Sequence[int],
) -> None:
    await conn.execute(
        """
DELETE FROM feature_pending_runs q USING unnest($1::text[], $2::bigint[]) AS t(r, v)
WHERE q.request_id = t.r AND q.version = t.v
""",
        list(run_ids),
        list(versions),
    )
    await conn.execute(
        "DELETE FROM feature_pending_removals WHERE id = ANY($1::bigint[])", list(removal_ids)
    )


async def sae_keys(
    conn: asyncpg.Connection, saes: Sequence[tuple[str, int]], edges: Sequence[float]
) -> dict[tuple[str, int], int]:
    """The key of each (sae_id, layer), creating catalog rows for SAEs seen for the first time."""
    if not saes:
        return {}
    ids, layers = [s for s, _ in saes], [layer for _, layer in saes]
    await conn.execute(
        """
INSERT INTO feature_saes (sae_id, layer, hist_edges)
SELECT s, l, $3::float8[] FROM unnest($1::text[], $2::int[]) AS t(s, l)
ON CONFLICT (sae_id, layer) DO NOTHING
""",
        ids,
        layers,
        list(edges),
    )
    rows = await conn.fetch(
        """
SELECT f.sae_id, f.layer, f.sae_key FROM feature_saes f
JOIN unnest($1::text[], $2::int[]) AS t(s, l) ON f.sae_id = t.s AND f.layer = t.l
""",
        ids,
        layers,
    )
    return {(r["sae_id"], r["layer"]): r["sae_key"] for r in rows}


async def add_totals(
    conn: asyncpg.Connection, keys: Sequence[int], runs: Sequence[int], positions: Sequence[int]
) -> None:
    await conn.execute(
        """
UPDATE feature_saes s SET runs_total = s.runs_total + t.r, positions_total = s.positions_total + t.p
FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS t(k, r, p) WHERE s.sae_key = t.k
""",
        list(keys),
        list(runs),
        list(positions),
    )


async def add_stats(
    conn: asyncpg.Connection, keys: Sequence[int], fids: Sequence[int], runs: Sequence[int]
) -> None:
    """runs_fired += runs per (sae, feature); sorted input keeps lock order stable."""
    await conn.execute(
        """
INSERT INTO feature_stats AS s (sae_key, feature_id, runs_fired)
SELECT * FROM unnest($1::int[], $2::int[], $3::bigint[])
ON CONFLICT (sae_key, feature_id) DO UPDATE SET runs_fired = s.runs_fired + EXCLUDED.runs_fired
""",
        list(keys),
        list(fids),
        list(runs),
    )


async def add_hist(
    conn: asyncpg.Connection,
    keys: Sequence[int],
    fids: Sequence[int],
    bins: Sequence[int],
    counts: Sequence[int],
) -> None:
    await conn.execute(
        """
INSERT INTO feature_hist AS h (sae_key, feature_id, bin, count)
SELECT * FROM unnest($1::int[], $2::int[], $3::int2[], $4::bigint[])
ON CONFLICT (sae_key, feature_id, bin) DO UPDATE SET count = h.count + EXCLUDED.count
""",
        list(keys),
        list(fids),
        list(bins),
        list(counts),
    )


async def remove_members(
    conn: asyncpg.Connection, run_ids: Sequence[str], versions: Sequence[int]
) -> None:
    await conn.execute(
        """
DELETE FROM feature_run_members m USING unnest($1::text[], $2::bigint[]) AS t(r, v)
WHERE m.request_id = t.r AND m.version = t.v
""",
        list(run_ids),
        list(versions),
    )


MEMBER_COLUMNS = ["request_id", "version", "sae_key", "keys", "max_acts"]


async def copy_members(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> None:
    """(request_id, version, sae_key, keys, max_acts) rows, by COPY."""
    if records:
        await conn.copy_records_to_table(
            "feature_run_members", records=records, columns=MEMBER_COLUMNS
        )


async def pending_counts(conn: asyncpg.Connection) -> tuple[int, int]:
    """The fold's backlog: queued run versions and queued removals (the metrics' gauge)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM feature_pending_runs) AS runs,"
        " (SELECT count(*) FROM feature_pending_removals) AS removals"
    )
    assert row is not None
    return int(row["runs"]), int(row["removals"])

"""SQL of the feature fold's leaderboards (feature_top_runs, migration 0016): removing folded-out
runs, adding candidates, trimming to capacity, refilling boards under their low water; run by
the fold (backend/features/fold.py) under its advisory lock (fold_sql.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


async def remove_top_runs(
    conn: asyncpg.Connection, run_ids: Sequence[str], versions: Sequence[int]
) -> list[asyncpg.Record]:
    """Drop these run versions from every leaderboard; answers the features touched."""
    return await conn.fetch(
        """
WITH gone AS (
  DELETE FROM feature_top_runs t USING unnest($1::text[], $2::bigint[]) AS r(rid, ver)
  WHERE t.request_id = r.rid AND t.version = r.ver
  RETURNING t.sae_key, t.feature_id
), counted AS (
  SELECT sae_key, feature_id, count(*) AS n FROM gone GROUP BY sae_key, feature_id
)
UPDATE feature_stats s SET top_count = s.top_count - c.n
FROM counted c WHERE s.sae_key = c.sae_key AND s.feature_id = c.feature_id
RETURNING s.sae_key, s.feature_id, s.top_count, s.top_full
""",
        list(run_ids),
        list(versions),
    )


async def add_top_candidates(
    conn: asyncpg.Connection,
    keys: Sequence[int],
    fids: Sequence[int],
    acts: Sequence[float],
    run_ids: Sequence[str],
    versions: Sequence[int],
    positions: Sequence[int],
    capacity: int,
) -> list[asyncpg.Record]:
    """Insert the candidates at or above their feature's floor (every one while the board is
    not full); answers the features now over ``capacity``."""
    return await conn.fetch(
        """
WITH c AS (
  SELECT * FROM unnest($1::int[], $2::int[], $3::real[], $4::text[], $5::bigint[], $6::int[])
    AS c(sae_key, feature_id, max_act, request_id, version, max_position)
), ins AS (
  INSERT INTO feature_top_runs (sae_key, feature_id, max_act, request_id, version, max_position)
  SELECT c.sae_key, c.feature_id, c.max_act, c.request_id, c.version, c.max_position
  FROM c JOIN feature_stats s ON s.sae_key = c.sae_key AND s.feature_id = c.feature_id
  WHERE NOT s.top_full
     OR (c.max_act, c.request_id, c.version) > (s.floor_act, s.floor_request_id, s.floor_version)
  ON CONFLICT DO NOTHING
  RETURNING sae_key, feature_id
), counted AS (
  SELECT sae_key, feature_id, count(*) AS n FROM ins GROUP BY sae_key, feature_id
), counts AS (
  UPDATE feature_stats s SET top_count = s.top_count + c.n
  FROM counted c WHERE s.sae_key = c.sae_key AND s.feature_id = c.feature_id
  RETURNING s.sae_key, s.feature_id, s.top_count
)
SELECT sae_key, feature_id FROM counts WHERE top_count > $7
""",
        list(keys),
        list(fids),
        list(acts),
        list(run_ids),
        list(versions),
        list(positions),
        capacity,
    )


async def trim_top_runs(
    conn: asyncpg.Connection, keys: Sequence[int], fids: Sequence[int], capacity: int
) -> None:
    """Cut these features' boards back to ``capacity``; the last kept entry is the new floor."""
    await conn.execute(
        """
WITH f AS (SELECT * FROM unnest($1::int[], $2::int[]) AS f(sae_key, feature_id)),
ranked AS (
  SELECT t.sae_key, t.feature_id, t.request_id, t.version, t.max_act,
         row_number() OVER (PARTITION BY t.sae_key, t.feature_id
                            ORDER BY t.max_act DESC, t.request_id DESC, t.version DESC) AS rn
  FROM feature_top_runs t JOIN f ON t.sae_key = f.sae_key AND t.feature_id = f.feature_id
), cut AS (
  DELETE FROM feature_top_runs t USING ranked r
  WHERE r.rn > $3 AND t.request_id = r.request_id AND t.version = r.version
    AND t.sae_key = r.sae_key AND t.feature_id = r.feature_id
)
UPDATE feature_stats s
SET top_count = $3, top_full = true,
    floor_act = r.max_act, floor_request_id = r.request_id, floor_version = r.version
FROM ranked r
WHERE r.rn = $3 AND s.sae_key = r.sae_key AND s.feature_id = r.feature_id
""",
        list(keys),
        list(fids),
        capacity,
    )


async def boards_to_refill(
    conn: asyncpg.Connection, keys: Sequence[int], fids: Sequence[int], low: int, limit: int
) -> list[asyncpg.Record]:
    """Of these features, the full boards that deletions left under ``low`` entries."""
    return await conn.fetch(
        """
SELECT s.sae_key, s.feature_id, s.top_count, s.floor_act, s.floor_request_id, s.floor_version
FROM feature_stats s JOIN unnest($1::int[], $2::int[]) AS f(k, fid)
  ON s.sae_key = f.k AND s.feature_id = f.fid
WHERE s.top_full AND s.top_count < $3
LIMIT $4
""",
        list(keys),
        list(fids),
        low,
        limit,
    )


async def lower_floor(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_id: int,
    added: int,
    floor: tuple[float, str, int] | None,
) -> None:
    """After a refill: ``added`` entries joined the board; ``floor`` None = it holds every run."""
    await conn.execute(
        """
UPDATE feature_stats SET top_count = top_count + $3, top_full = $4::real IS NOT NULL,
       floor_act = $4, floor_request_id = $5, floor_version = $6
WHERE sae_key = $1 AND feature_id = $2
""",
        sae_key,
        feature_id,
        added,
        floor[0] if floor else None,
        floor[1] if floor else None,
        floor[2] if floor else None,
    )


async def insert_top_runs(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> None:
    """(sae_key, feature_id, max_act, request_id, version, max_position) rows."""
    if records:
        await conn.executemany(
            "INSERT INTO feature_top_runs (sae_key, feature_id, max_act, request_id, version,"
            " max_position) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            records,
        )

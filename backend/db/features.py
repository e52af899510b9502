"""SQL of the feature explorer (migration 0016), as named functions over an asyncpg connection:
the fold's queue claims and per-feature upserts, the explorer's reads, the SAE catalog and
label cache, and the bulk loaders of the benchmark seeder."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

FOLD_LOCK = 0x0F0_1D_0016  # pg advisory lock: one fold at a time across backend processes

# -- the fold ------------------------------------------------------------------------------------


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


# -- reads -----------------------------------------------------------------------------------------


async def sae_by_id(conn: asyncpg.Connection, sae_id: str, layer: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM feature_saes WHERE sae_id = $1 AND layer = $2", sae_id, layer
    )


async def saes_by_key(conn: asyncpg.Connection, keys: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM feature_saes WHERE sae_key = ANY($1::int[])", list(keys))


async def feature_stats(
    conn: asyncpg.Connection, sae_key: int, feature_id: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM feature_stats WHERE sae_key = $1 AND feature_id = $2", sae_key, feature_id
    )


async def feature_hist(
    conn: asyncpg.Connection, sae_key: int, feature_id: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT bin, count FROM feature_hist WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def pending_runs(
    conn: asyncpg.Connection, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    """Queued (not yet folded) run versions of one SAE (all SAEs when ``sae_id`` is None)."""
    return await conn.fetch(
        """
SELECT a.request_id, a.version, a.sae_id, a.sae_layer, a.n_positions, a.data
FROM feature_pending_runs q
JOIN activation_run_features a ON a.request_id = q.request_id AND a.version = q.version
WHERE ($1::text IS NULL OR (a.sae_id = $1 AND a.sae_layer = $2))
LIMIT $3
""",
        sae_id,
        layer,
        limit,
    )


async def pending_removals(
    conn: asyncpg.Connection, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
SELECT r.request_id, r.version, r.sae_id, r.sae_layer, r.n_positions, r.data
FROM feature_pending_removals r
WHERE ($1::text IS NULL OR (r.sae_id = $1 AND r.sae_layer = $2))
  -- A version still queued was never folded (its fold rolled back): nothing to take back.
  AND NOT EXISTS (SELECT 1 FROM feature_pending_runs q
                  WHERE q.request_id = r.request_id AND q.version = r.version)
LIMIT $3
""",
        sae_id,
        layer,
        limit,
    )


async def top_runs(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_id: int,
    limit: int,
    before: tuple[float, str] | None,
) -> list[asyncpg.Record]:
    """The leaderboard's current entries below ``before`` (max_act, request_id), best first.
    Entries of replaced or deleted runs (their removal still queued) are left out."""
    return await conn.fetch(
        """
SELECT t.request_id, t.version, t.max_act, t.max_position
FROM feature_top_runs t
JOIN activation_run_features a ON a.request_id = t.request_id AND a.version = t.version
WHERE t.sae_key = $1 AND t.feature_id = $2
  AND ($4::real IS NULL OR (t.max_act, t.request_id) < ($4, $5))
ORDER BY t.max_act DESC, t.request_id DESC, t.version DESC
LIMIT $3
""",
        sae_key,
        feature_id,
        limit,
        before[0] if before else None,
        before[1] if before else None,
    )


async def members_in_bin(
    conn: asyncpg.Connection,
    sae_key: int,
    key: int,
    limit: int,
    before: tuple[float, str] | None,
) -> list[asyncpg.Record]:
    """Folded current runs whose max for the feature falls in the bin of ``key`` (GIN), below
    ``before``, best first."""
    return await conn.fetch(
        """
SELECT m.request_id, m.version, m.max_acts[array_position(m.keys, $2)] AS max_act
FROM feature_run_members m
JOIN activation_run_features a ON a.request_id = m.request_id AND a.version = m.version
WHERE m.keys @> ARRAY[$2::int] AND m.sae_key = $1
  AND ($4::real IS NULL OR (m.max_acts[array_position(m.keys, $2)], m.request_id) < ($4, $5))
ORDER BY 3 DESC, m.request_id DESC
LIMIT $3
""",
        sae_key,
        key,
        limit,
        before[0] if before else None,
        before[1] if before else None,
    )


async def run_features(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Current aggregates of these runs (for positions of fallback rows)."""
    return await conn.fetch(
        "SELECT request_id, version, n_positions, data FROM activation_run_features "
        "WHERE request_id = ANY($1::text[])",
        list(run_ids),
    )


async def timelines(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """What the token windows need: packed timelines and token texts of these runs."""
    return await conn.fetch(
        """
SELECT p.request_id, i.created_at, i.prompt_preview, p.timeline_packed, p.timeline_tokens,
       CASE WHEN p.timeline_packed IS NULL THEN p.feature_timeline::text END AS feature_timeline
FROM activation_run_previews p JOIN activation_run_index i ON i.request_id = p.request_id
WHERE p.request_id = ANY($1::text[])
""",
        list(run_ids),
    )


async def label(conn: asyncpg.Connection, sae_key: int, feature_id: int) -> str | None:
    return await conn.fetchval(
        "SELECT label FROM feature_labels WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def labels(
    conn: asyncpg.Connection, sae_key: int, feature_ids: Sequence[int] | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
SELECT feature_id, label FROM feature_labels
WHERE sae_key = $1 AND ($2::int[] IS NULL OR feature_id = ANY($2))
ORDER BY feature_id
""",
        sae_key,
        list(feature_ids) if feature_ids is not None else None,
    )


async def cached_examples(conn: asyncpg.Connection, sae_key: int, feature_id: int) -> str | None:
    """The SAE's examples for this feature as JSON text, when cached."""
    return await conn.fetchval(
        "SELECT examples::text FROM feature_examples WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def cache_examples(
    conn: asyncpg.Connection, sae_key: int, feature_id: int, examples_json: str
) -> None:
    await conn.execute(
        """
INSERT INTO feature_examples (sae_key, feature_id, examples) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (sae_key, feature_id) DO UPDATE SET examples = EXCLUDED.examples, fetched_at = now()
""",
        sae_key,
        feature_id,
        examples_json,
    )


async def search_fired_labels(
    conn: asyncpg.Connection,
    tsquery: str,
    sae_id: str | None,
    layer: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Fired features whose label matches a ``to_tsquery('simple', ...)`` text, most-fired
    first. Postgres picks the plan: for a broad query it walks features by runs_fired and
    stops at ``limit`` matches; for a narrow one it takes the label index's matches and sorts."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, st.feature_id, l.label, st.runs_fired
FROM feature_stats st
JOIN feature_labels l ON l.sae_key = st.sae_key AND l.feature_id = st.feature_id
JOIN feature_saes s ON s.sae_key = st.sae_key
WHERE st.runs_fired > 0 AND l.search @@ to_tsquery('simple', $1)
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
ORDER BY st.runs_fired DESC, st.sae_key, st.feature_id
LIMIT $4
""",
        tsquery,
        sae_id,
        layer,
        limit,
    )


async def search_unfired_labels(
    conn: asyncpg.Connection,
    tsquery: str,
    sae_id: str | None,
    layer: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Matching labels of features that never fired in a folded run (after the fired ones)."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, l.feature_id, l.label, 0::bigint AS runs_fired
FROM feature_labels l
JOIN feature_saes s ON s.sae_key = l.sae_key
WHERE l.search @@ to_tsquery('simple', $1)
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
  AND NOT EXISTS (SELECT 1 FROM feature_stats st WHERE st.sae_key = l.sae_key
                  AND st.feature_id = l.feature_id AND st.runs_fired > 0)
ORDER BY s.sae_id, s.layer, l.feature_id
LIMIT $4
""",
        tsquery,
        sae_id,
        layer,
        limit,
    )


async def features_by_id(
    conn: asyncpg.Connection, feature_id: int, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    """This feature id in every cached SAE that has it (labelled or not), most-fired first."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, $1::int AS feature_id, l.label, coalesce(st.runs_fired, 0) AS runs_fired
FROM feature_saes s
LEFT JOIN feature_labels l ON l.sae_key = s.sae_key AND l.feature_id = $1
LEFT JOIN feature_stats st ON st.sae_key = s.sae_key AND st.feature_id = $1
WHERE s.d_sae > $1
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
ORDER BY runs_fired DESC, s.sae_id, s.layer
LIMIT $4
""",
        feature_id,
        sae_id,
        layer,
        limit,
    )


async def run_summaries(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Index rows of these runs (the listing's item columns)."""
    return await conn.fetch(
        """
SELECT request_id, created_at, updated_at, model_id, prompt_preview, status, error_code,
       error_message, error_upstream, prompt_tokens, output_tokens, finish_reason, sae_id,
       sae_layer, sae_top_k, has_preview, pruned_at, engine_ms, sae_ms, total_ms
FROM activation_run_index WHERE request_id = ANY($1::text[])
""",
        list(run_ids),
    )


# -- the SAE catalog and label cache ------------------------------------------------------------


async def upsert_listed_sae(
    conn: asyncpg.Connection,
    sae_id: str,
    layer: int,
    *,
    d_sae: int | None,
    has_labels: bool,
    has_examples: bool,
    model_id: str | None,
    listed_at: datetime,
    edges: Sequence[float],
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
INSERT INTO feature_saes (sae_id, layer, d_sae, has_labels, has_examples, model_id, listed_at,
                          hist_edges)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8[])
ON CONFLICT (sae_id, layer) DO UPDATE SET
  d_sae = coalesce(EXCLUDED.d_sae, feature_saes.d_sae), has_labels = EXCLUDED.has_labels,
  has_examples = EXCLUDED.has_examples, model_id = EXCLUDED.model_id,
  listed_at = EXCLUDED.listed_at
RETURNING *
""",
        sae_id,
        layer,
        d_sae,
        has_labels,
        has_examples,
        model_id,
        listed_at,
        list(edges),
    )


async def ensure_sae(
    conn: asyncpg.Connection, sae_id: str, layer: int, d_sae: int | None, edges: Sequence[float]
) -> asyncpg.Record:
    """The catalog row of an SAE named by hand (label import), created when missing."""
    return await conn.fetchrow(
        """
INSERT INTO feature_saes (sae_id, layer, d_sae, hist_edges) VALUES ($1, $2, $3, $4::float8[])
ON CONFLICT (sae_id, layer) DO UPDATE SET d_sae = coalesce(EXCLUDED.d_sae, feature_saes.d_sae)
RETURNING *
""",
        sae_id,
        layer,
        d_sae,
        list(edges),
    )


async def replace_labels(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_ids: Sequence[int],
    labels_: Sequence[str],
    source: str,
) -> None:
    """All of an SAE's labels at once (one transaction): delete, COPY, stamp the source."""
    async with conn.transaction():
        await conn.execute("DELETE FROM feature_labels WHERE sae_key = $1", sae_key)
        await conn.copy_records_to_table(
            "feature_labels",
            records=[(sae_key, f, text) for f, text in zip(feature_ids, labels_, strict=True)],
            columns=["sae_key", "feature_id", "label"],
        )
        await conn.execute(
            "UPDATE feature_saes SET labels_source = $2, labels_loaded_at = now()"
            " WHERE sae_key = $1",
            sae_key,
            source,
        )


# -- bulk loading (benchmark seeder) --------------------------------------------------------------


async def copy_rows(
    conn: asyncpg.Connection, table: str, columns: list[str], records: Iterable[tuple[Any, ...]]
) -> None:
    """COPY into one of the feature tables (the seeder writes derived tables directly)."""
    if table not in _BULK_TABLES:
        raise ValueError(f"not a bulk-loadable table: {table}")
    await conn.copy_records_to_table(table, records=records, columns=columns)


_BULK_TABLES = {
    "activation_run_features",
    "feature_stats",
    "feature_hist",
    "feature_top_runs",
    "feature_run_members",
    "feature_labels",
}


async def set_totals(
    conn: asyncpg.Connection, sae_key: int, runs_total: int, positions_total: int
) -> None:
    await conn.execute(
        "UPDATE feature_saes SET runs_total = $2, positions_total = $3 WHERE sae_key = $1",
        sae_key,
        runs_total,
        positions_total,
    )


async def clear_pending_runs(conn: asyncpg.Connection) -> None:
    """Seeder only: rows it COPYs with their derived tables already written are not queued."""
    await conn.execute("TRUNCATE feature_pending_runs")


async def runs_fired(conn: asyncpg.Connection, sae_id: str, layer: int, feature_id: int) -> int:
    """Folded runs only (the benchmark's report)."""
    return await conn.fetchval(
        "SELECT coalesce(max(st.runs_fired), 0) FROM feature_stats st"
        " JOIN feature_saes s ON s.sae_key = st.sae_key"
        " WHERE s.sae_id = $1 AND s.layer = $2 AND st.feature_id = $3",
        sae_id,
        layer,
        feature_id,
    )


async def queue_sizes(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT (SELECT count(*) FROM feature_pending_runs) AS runs,"
        " (SELECT count(*) FROM feature_pending_removals) AS removals"
    )


async def drop_member_index(conn: asyncpg.Connection) -> None:
    """Seeder: the members' GIN index is built once after the bulk COPY (far faster)."""
    await conn.execute("DROP INDEX IF EXISTS feature_run_members_keys_idx")


async def create_member_index(conn: asyncpg.Connection) -> None:
    """The index of migration 0016, rebuilt after a bulk load."""
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS feature_run_members_keys_idx "
        "ON feature_run_members USING gin (keys)"
    )
    await conn.execute("RESET maintenance_work_mem")


async def after_bulk_load(conn: asyncpg.Connection, last_version: int) -> None:
    """Seeder: its rows came with their versions and folded tables; none is queued."""
    await conn.execute("SELECT setval('activation_run_features_version_seq', $1)", last_version)
    await conn.execute("TRUNCATE feature_pending_runs, feature_pending_removals")


RUN_TABLES = {"activation_run_index", "activation_run_previews"}
_SIZED_TABLES = [
    "activation_run_index",
    "activation_run_previews",
    "activation_run_features",
    "feature_pending_runs",
    "feature_pending_removals",
    "feature_saes",
    "feature_labels",
    "feature_examples",
    "feature_stats",
    "feature_hist",
    "feature_top_runs",
    "feature_run_members",
]


async def table_sizes(conn: asyncpg.Connection) -> dict[str, int]:
    """pg_total_relation_size (table, TOAST and indexes) of each table of runs and features."""
    rows = await conn.fetch(
        "SELECT t, pg_total_relation_size(t::regclass) AS bytes FROM unnest($1::text[]) AS t",
        _SIZED_TABLES,
    )
    return {r["t"]: r["bytes"] for r in rows}


async def row_bytes(conn: asyncpg.Connection, run_ids: Sequence[str]) -> int:
    """Mean bytes of these runs' index and preview rows (pg_column_size of the whole rows)."""
    return await conn.fetchval(
        """
SELECT round(avg(pg_column_size(i.*) + pg_column_size(p.*)))::bigint
FROM activation_run_index i JOIN activation_run_previews p ON p.request_id = i.request_id
WHERE i.request_id = ANY($1::text[])
""",
        list(run_ids),
    )


async def pending_counts(conn: asyncpg.Connection) -> tuple[int, int]:
    """The fold's backlog: queued run versions and queued removals (the metrics' gauge)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM feature_pending_runs) AS runs,"
        " (SELECT count(*) FROM feature_pending_removals) AS removals"
    )
    assert row is not None
    return int(row["runs"]), int(row["removals"])

"""All SQL the backend runs, as named functions over an asyncpg connection."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One row of activation_run_index (column order = field order)."""

    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt_preview: str
    status: str  # ok | failed | stopped
    error_code: str | None
    error_message: str | None
    error_upstream: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    has_preview: bool
    engine_ms: float | None
    sae_ms: float | None
    total_ms: float | None
    parse_special_tokens: bool = False
    trace_id: str | None = None  # the X-Request-ID of the request that made the run


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One row of activation_run_previews; ``feature_timeline`` is JSON text."""

    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt: str
    output_text: str
    output_token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    feature_timeline: str
    timeline_packed: bytes | None
    timeline_tokens: list[str] | None


@dataclass(frozen=True, slots=True)
class FeaturesRow:
    """One row of activation_run_features: the run's per-feature aggregate
    (``backend/activations/aggregate.py``); ``version`` is assigned by the database."""

    request_id: str
    sae_id: str
    sae_layer: int
    n_positions: int
    data: bytes


INDEX_COLUMNS = [f.name for f in fields(IndexRow)]
PREVIEW_COLUMNS = [f.name for f in fields(PreviewRow)]
FEATURES_COLUMNS = [f.name for f in fields(FeaturesRow)]


def _assignments(columns: list[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "request_id")


def _placeholders(first: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(first, first + count))


_N_INDEX = len(INDEX_COLUMNS)


# One statement (one round trip, atomic): the index upsert feeds the preview write, so every
# writer locks the index row first; concurrent runs with one id serialise on it and the last
# to commit leaves a consistent pair. A re-run also clears an earlier prune mark. A failure
# never replaces a run that succeeded (its upsert skips an ``ok`` row, and so leaves its preview).
def _upsert_index_cte(guard: str = "") -> str:
    return f"""
WITH idx AS (
  INSERT INTO activation_run_index ({", ".join(INDEX_COLUMNS)})
  VALUES ({_placeholders(1, _N_INDEX)})
  ON CONFLICT (request_id) DO UPDATE SET {_assignments(INDEX_COLUMNS)}, pruned_at = NULL
  {guard}
  RETURNING request_id
)
"""


_N_PREVIEW = len(PREVIEW_COLUMNS) - 1
_UPSERT_PREVIEW_CTE = f"""
, prev AS (
  INSERT INTO activation_run_previews ({", ".join(PREVIEW_COLUMNS)})
  SELECT idx.request_id, {_placeholders(_N_INDEX + 1, _N_PREVIEW)} FROM idx
  ON CONFLICT (request_id) DO UPDATE SET {_assignments(PREVIEW_COLUMNS)}
  RETURNING request_id
)
"""
# The run's feature aggregate joins the same statement; a new version every write (the
# trigger of 0016 queues it for the fold, and queues the removal of a folded older one).
_FIRST_FEATURES = _N_INDEX + _N_PREVIEW + 1
# Never over a run that succeeded: what failures and stopped runs write (an ``ok`` row stays,
# and so does its preview: the guarded upsert returns no row for the next writes to follow).
_NOT_OVER_OK = "WHERE activation_run_index.status <> 'ok'"


def _save_with_features(guard: str = "") -> str:
    return (
        _upsert_index_cte(guard)
        + _UPSERT_PREVIEW_CTE
        + f"""
INSERT INTO activation_run_features ({", ".join(FEATURES_COLUMNS)})
SELECT prev.request_id, {_placeholders(_FIRST_FEATURES, len(FEATURES_COLUMNS) - 1)} FROM prev
ON CONFLICT (request_id) DO UPDATE SET {_assignments(FEATURES_COLUMNS)}, version = DEFAULT
"""
    )


def _save_without_features(guard: str = "") -> str:
    return (
        _upsert_index_cte(guard)
        + _UPSERT_PREVIEW_CTE
        + "DELETE FROM activation_run_features f USING prev WHERE f.request_id = prev.request_id"
    )


# By "does this write stand back for a run that succeeded" (a stopped run's does).
_SAVE_WITH_FEATURES = {False: _save_with_features(), True: _save_with_features(_NOT_OVER_OK)}
_SAVE_WITHOUT_FEATURES = {
    False: _save_without_features(),
    True: _save_without_features(_NOT_OVER_OK),
}
# A failed run keeps no preview (its features go with it: ON DELETE CASCADE), and is written
# only over nothing or an earlier failure, never over a run that succeeded.
_SAVE_FAILURE = (
    _upsert_index_cte(_NOT_OVER_OK)
    + "DELETE FROM activation_run_previews p USING idx WHERE p.request_id = idx.request_id"
)


async def save_run(
    conn: asyncpg.Connection,
    index: IndexRow,
    preview: PreviewRow | None,
    features: FeaturesRow | None = None,
) -> None:
    """Write a run's index row, its preview and its feature aggregate (or remove stale ones)
    in one statement; a failure (no preview) never replaces a run that succeeded."""
    await conn.execute(*save_statement(index, preview, features))


def save_statement(
    index: IndexRow, preview: PreviewRow | None, features: FeaturesRow | None = None
) -> tuple[str, ...]:
    """save_run's one statement and its arguments (also what bench.scale times under EXPLAIN)."""
    if preview is None:
        if features is not None:
            raise ValueError("a run without a preview has no feature aggregate")
        return (_SAVE_FAILURE, *astuple(index))
    if preview.request_id != index.request_id or (
        features is not None and features.request_id != index.request_id
    ):
        raise ValueError("a run's rows must share one request_id")
    guarded = index.status != "ok"
    if features is None:
        return (_SAVE_WITHOUT_FEATURES[guarded], *astuple(index), *astuple(preview)[1:])
    return (
        _SAVE_WITH_FEATURES[guarded],
        *astuple(index),
        *astuple(preview)[1:],
        *astuple(features)[1:],
    )


_RUN_SELECT = """
SELECT i.request_id, i.created_at, i.updated_at, i.model_id, i.prompt_preview, i.status,
       i.error_code, i.error_message, i.error_upstream, i.prompt_tokens, i.output_tokens,
       i.finish_reason, i.sae_id, i.sae_layer, i.sae_top_k, i.has_preview, i.pruned_at,
       i.engine_ms, i.sae_ms, i.total_ms, i.trace_id
"""


async def get_run(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """The index row joined with its preview; ``feature_timeline`` comes back as JSON text."""
    return await conn.fetchrow(
        _RUN_SELECT
        + """,
       p.request_id IS NOT NULL AS stored, p.prompt, p.output_text, p.output_token_ids,
       p.prompt_token_ids, p.finish_reason AS p_finish_reason, p.sae_id AS p_sae_id,
       p.sae_layer AS p_sae_layer, p.sae_top_k AS p_sae_top_k,
       p.feature_timeline::text AS feature_timeline, p.timeline_packed
FROM activation_run_index i
LEFT JOIN activation_run_previews p ON p.request_id = i.request_id
WHERE i.request_id = $1
""",
        request_id,
    )


async def get_prompt_preview(conn: asyncpg.Connection, request_id: str) -> str | None:
    """The run's stored prompt preview (the page's Open Graph description); None if no such run."""
    return await conn.fetchval(
        "SELECT prompt_preview FROM activation_run_index WHERE request_id = $1", request_id
    )


async def get_timeline(
    conn: asyncpg.Connection, request_id: str, *, with_tokens: bool
) -> asyncpg.Record | None:
    """What rows/top-features need: the packed timeline (the JSON only when no packed copy)."""
    tokens = "p.timeline_tokens" if with_tokens else "NULL::text[]"
    return await conn.fetchrow(
        f"""
SELECT i.status, i.pruned_at, p.request_id IS NOT NULL AS stored, p.sae_id IS NOT NULL AS collected,
       cardinality(p.prompt_token_ids) AS output_start, p.timeline_packed,
       {tokens} AS timeline_tokens,
       CASE WHEN p.timeline_packed IS NULL THEN p.feature_timeline::text END AS feature_timeline
FROM activation_run_index i
LEFT JOIN activation_run_previews p ON p.request_id = i.request_id
WHERE i.request_id = $1
""",
        request_id,
    )


# The listing's four shapes, each its own statement so that every plan (generic ones too)
# walks an index from the cursor on: (created_at DESC, request_id DESC), or with a status
# (status, created_at DESC, request_id DESC) from 0017. One statement with
# "$1 IS NULL OR ..." would fall back to a filtered scan from the newest row under a generic
# plan, costing O(depth) for a deep cursor.
_LIST_WHERE = {
    (False, False): "",
    (True, False): "WHERE (i.created_at, i.request_id) < ($2, $3)",
    (False, True): "WHERE i.status = $2",
    (True, True): "WHERE i.status = $4 AND (i.created_at, i.request_id) < ($2, $3)",
}


async def list_runs(
    conn: asyncpg.Connection,
    *,
    limit: int,
    before_created_at: datetime | None,
    before_request_id: str | None,
    status: str | None,
) -> list[asyncpg.Record]:
    """Newest first; keyset pagination on (created_at, request_id); O(log n + limit)."""
    after = before_created_at is not None
    args: list[object] = [limit]
    if after:
        args += [before_created_at, before_request_id]
    if status is not None:
        args.append(status)
    return await conn.fetch(list_runs_sql(after=after, status=status is not None), *args)


def list_runs_sql(*, after: bool, status: bool) -> str:
    """The listing statement: $1 limit, then ($2, $3) the cursor, then the status."""
    return (
        _RUN_SELECT
        + f"""
FROM activation_run_index i
{_LIST_WHERE[(after, status)]}
ORDER BY i.created_at DESC, i.request_id DESC
LIMIT $1
"""
    )


# Counts from the trigger-maintained tables (0017): a few hundred rows at most, whatever the
# number of runs. ``runs_last_24h`` is exact to the hour: runs since the start of the UTC hour
# 24 hours ago. First/last run: one probe each at the ends of the created_at index.
SUMMARY_SQL = """
SELECT coalesce(sum(runs), 0)::bigint AS total_runs,
       coalesce(sum(runs) FILTER (WHERE status = 'ok'), 0)::bigint AS ok_runs,
       coalesce(sum(runs) FILTER (WHERE status = 'failed'), 0)::bigint AS failed_runs,
       coalesce(sum(runs) FILTER (WHERE has_preview), 0)::bigint AS with_preview,
       coalesce(sum(runs) FILTER (WHERE pruned), 0)::bigint AS pruned_runs,
       (SELECT coalesce(sum(runs), 0)::bigint FROM activation_run_hours
        WHERE hour >= date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '24 hours')
         AS runs_last_24h,
       (SELECT min(created_at) FROM activation_run_index) AS first_run_at,
       (SELECT max(created_at) FROM activation_run_index) AS last_run_at
FROM activation_run_counts
"""
RUNS_PER_MODEL_SQL = (
    "SELECT model_id, sum(runs)::bigint AS runs FROM activation_run_counts "
    "GROUP BY model_id HAVING sum(runs) > 0 ORDER BY runs DESC, model_id LIMIT $1"
)


async def summary(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow(SUMMARY_SQL)


async def runs_per_model(conn: asyncpg.Connection, limit: int = 20) -> list[asyncpg.Record]:
    return await conn.fetch(RUNS_PER_MODEL_SQL, limit)


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")


async def copy_runs(
    conn: asyncpg.Connection, index: list[IndexRow], previews: list[PreviewRow]
) -> None:
    """Bulk insert (benchmark seeding): COPY both tables in one transaction."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "activation_run_index", records=[astuple(r) for r in index], columns=INDEX_COLUMNS
        )
        await conn.copy_records_to_table(
            "activation_run_previews",
            records=[astuple(r) for r in previews],
            columns=PREVIEW_COLUMNS,
        )


async def select_preview_row(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """The bare SELECT of a whole preview row (the benchmark's baseline)."""
    return await conn.fetchrow(
        "SELECT * FROM activation_run_previews WHERE request_id = $1", request_id
    )

"""The run reads (one run, its timeline, the listing, the summary counts, the health ping), as
named functions over an asyncpg connection; the rows and their writes are queries.py."""

from __future__ import annotations

from datetime import datetime

import asyncpg

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


async def select_preview_row(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """The bare SELECT of a whole preview row (the benchmark's baseline)."""
    return await conn.fetchrow(
        "SELECT * FROM activation_run_previews WHERE request_id = $1", request_id
    )

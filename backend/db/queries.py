"""All SQL the backend runs, as named functions over an asyncpg connection."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One row of activation_run_index (column order = field order)."""

    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt_preview: str
    status: str  # ok | failed
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


INDEX_COLUMNS = [f.name for f in fields(IndexRow)]
PREVIEW_COLUMNS = [f.name for f in fields(PreviewRow)]


def _assignments(columns: list[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "request_id")


def _placeholders(first: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(first, first + count))


_N_INDEX = len(INDEX_COLUMNS)
# One statement (one round trip, atomic): the index upsert feeds the preview write, so every
# writer locks the index row first; concurrent runs with one id serialise on it and the last
# to commit leaves a consistent pair. A re-run also clears an earlier prune mark.
_UPSERT_INDEX_CTE = f"""
WITH idx AS (
  INSERT INTO activation_run_index ({", ".join(INDEX_COLUMNS)})
  VALUES ({_placeholders(1, _N_INDEX)})
  ON CONFLICT (request_id) DO UPDATE SET {_assignments(INDEX_COLUMNS)}, pruned_at = NULL
  RETURNING request_id
)
"""
_SAVE_WITH_PREVIEW = (
    _UPSERT_INDEX_CTE
    + f"""
INSERT INTO activation_run_previews ({", ".join(PREVIEW_COLUMNS)})
SELECT idx.request_id, {_placeholders(_N_INDEX + 1, len(PREVIEW_COLUMNS) - 1)} FROM idx
ON CONFLICT (request_id) DO UPDATE SET {_assignments(PREVIEW_COLUMNS)}
"""
)
_SAVE_WITHOUT_PREVIEW = (
    _UPSERT_INDEX_CTE
    + "DELETE FROM activation_run_previews p USING idx WHERE p.request_id = idx.request_id"
)


async def save_run(conn: asyncpg.Connection, index: IndexRow, preview: PreviewRow | None) -> None:
    """Write a run's index row and its preview (or remove a stale one) atomically."""
    if preview is not None:
        if preview.request_id != index.request_id:
            raise ValueError("a run's index and preview rows must share one request_id")
        await conn.execute(_SAVE_WITH_PREVIEW, *astuple(index), *astuple(preview)[1:])
    else:
        await conn.execute(_SAVE_WITHOUT_PREVIEW, *astuple(index))


async def save_failure_unless_ok(conn: asyncpg.Connection, index: IndexRow) -> bool:
    """Record a failed run unless a run with its id already succeeded (that one is kept);
    returns whether it wrote. The index row is locked while deciding."""
    async with conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM activation_run_index WHERE request_id = $1 FOR UPDATE",
            index.request_id,
        )
        if status == "ok":
            return False
        await save_run(conn, index, None)
        return True


_RUN_SELECT = """
SELECT i.request_id, i.created_at, i.updated_at, i.model_id, i.prompt_preview, i.status,
       i.error_code, i.error_message, i.error_upstream, i.prompt_tokens, i.output_tokens,
       i.finish_reason, i.sae_id, i.sae_layer, i.sae_top_k, i.has_preview, i.pruned_at,
       i.engine_ms, i.sae_ms, i.total_ms
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


async def list_runs(
    conn: asyncpg.Connection,
    *,
    limit: int,
    before_created_at: datetime | None,
    before_request_id: str | None,
    status: str | None,
) -> list[asyncpg.Record]:
    """Newest first; keyset pagination on (created_at, request_id)."""
    return await conn.fetch(
        _RUN_SELECT
        + """
FROM activation_run_index i
WHERE ($1::timestamptz IS NULL OR (i.created_at, i.request_id) < ($1, $2))
  AND ($3::text IS NULL OR i.status = $3)
ORDER BY i.created_at DESC, i.request_id DESC
LIMIT $4
""",
        before_created_at,
        before_request_id,
        status,
        limit,
    )


async def summary(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow(
        """
SELECT count(*) AS total_runs,
       count(*) FILTER (WHERE status = 'ok') AS ok_runs,
       count(*) FILTER (WHERE status = 'failed') AS failed_runs,
       count(*) FILTER (WHERE has_preview) AS with_preview,
       count(*) FILTER (WHERE pruned_at IS NOT NULL) AS pruned_runs,
       count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS runs_last_24h,
       min(created_at) AS first_run_at,
       max(created_at) AS last_run_at
FROM activation_run_index
"""
    )


async def runs_per_model(conn: asyncpg.Connection, limit: int = 20) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT model_id, count(*) AS runs FROM activation_run_index "
        "GROUP BY model_id ORDER BY runs DESC, model_id LIMIT $1",
        limit,
    )


async def prune_previews(conn: asyncpg.Connection, older_than: timedelta) -> int:
    """Delete previews older than ``older_than``; their index rows stay, marked pruned."""
    async with conn.transaction():
        deleted = await conn.fetch(
            "DELETE FROM activation_run_previews WHERE created_at < now() - $1::interval "
            "RETURNING request_id",
            older_than,
        )
        ids = [r["request_id"] for r in deleted]
        await conn.execute(
            "UPDATE activation_run_index SET pruned_at = now(), has_preview = false "
            "WHERE request_id = ANY($1::text[])",
            ids,
        )
    return len(ids)


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

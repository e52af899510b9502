"""Bulk SQL for the scale benchmark and its sizing report: seeding, copies, sizes."""

from __future__ import annotations

import json
from dataclasses import astuple
from datetime import datetime

import asyncpg

from backend.db.queries import (
    INDEX_COLUMNS,
    PREVIEW_COLUMNS,
    FeaturesRow,
    IndexRow,
    PreviewRow,
    save_statement,
)


async def create_database(conn: asyncpg.Connection, name: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"not a plain database name: {name!r}")
    await conn.execute(f'CREATE DATABASE "{name}"')


async def drop_database(conn: asyncpg.Connection, name: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"not a plain database name: {name!r}")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Settings of a throwaway server while it is being filled (all reloadable, none needs a
# restart); ``bulk_load_mode(conn, False)`` puts the defaults back.
_BULK_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_wal_size": "'4GB'"}


async def bulk_load_mode(conn: asyncpg.Connection, on: bool) -> None:
    for name, value in _BULK_SETTINGS.items():
        if on:
            await conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        else:
            await conn.execute(f"ALTER SYSTEM RESET {name}")
    await conn.execute("SELECT pg_reload_conf()")
    if not on:
        await conn.execute("CHECKPOINT")


async def copy_index_rows(
    conn: asyncpg.Connection, rows: list[IndexRow], pruned_at: list[datetime | None]
) -> None:
    """COPY index rows with their prune marks (0017's triggers count them as they land:
    one grouped upsert per COPY)."""
    await conn.copy_records_to_table(
        "activation_run_index",
        records=[(*astuple(r), p) for r, p in zip(rows, pruned_at, strict=True)],
        columns=[*INDEX_COLUMNS, "pruned_at"],
    )


_PAYLOAD = [c for c in PREVIEW_COLUMNS if c not in ("request_id", "created_at", "updated_at")]


async def copy_preview(conn: asyncpg.Connection, template_id: str, request_ids: list[str]) -> int:
    """Give each listed run a copy of ``template_id``'s preview (server side: the stored
    values are copied as they are, no JSON parsed); its timestamps follow the run's."""
    status = await conn.execute(
        f"""
INSERT INTO activation_run_previews ({", ".join(PREVIEW_COLUMNS)})
SELECT i.request_id, i.created_at, i.updated_at, {", ".join("t." + c for c in _PAYLOAD)}
FROM activation_run_index i
CROSS JOIN activation_run_previews t
WHERE t.request_id = $1 AND i.request_id = ANY($2::text[])
""",
        template_id,
        request_ids,
    )
    return int(status.split()[-1])


async def listing_position(
    conn: asyncpg.Connection, offset: int, status: str | None
) -> asyncpg.Record | None:
    """(created_at, request_id) of the listing's row at ``offset``: where a deep cursor
    points. O(offset), for setting a benchmark up only."""
    return await conn.fetchrow(
        "SELECT created_at, request_id FROM activation_run_index "
        "WHERE $2::text IS NULL OR status = $2 "
        "ORDER BY created_at DESC, request_id DESC OFFSET $1 LIMIT 1",
        offset,
        status,
    )


async def one_preview_id(conn: asyncpg.Connection, newest: bool) -> str | None:
    direction = "DESC" if newest else "ASC"
    return await conn.fetchval(
        f"SELECT request_id FROM activation_run_previews ORDER BY created_at {direction} LIMIT 1"
    )


async def preview_ids_older_than(conn: asyncpg.Connection, age_s: float, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT request_id FROM activation_run_previews "
        "WHERE created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        age_s,
        limit,
    )
    return [r["request_id"] for r in rows]


async def count_previews(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM activation_run_previews")


# Brute force, for the benchmark's own check that the maintained counts are exact.
BRUTE_COUNTS = """
SELECT count(*) AS total_runs,
       count(*) FILTER (WHERE status = 'ok') AS ok_runs,
       count(*) FILTER (WHERE status = 'failed') AS failed_runs,
       count(*) FILTER (WHERE has_preview) AS with_preview,
       count(*) FILTER (WHERE pruned_at IS NOT NULL) AS pruned_runs,
       count(*) FILTER (WHERE created_at AT TIME ZONE 'UTC'
                        >= date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '24 hours')
         AS runs_last_24h
FROM activation_run_index
"""


async def brute_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return dict(await conn.fetchrow(BRUTE_COUNTS))


async def explain_save_run(
    conn: asyncpg.Connection, index: IndexRow, preview: PreviewRow, features: FeaturesRow | None
) -> dict[str, float]:
    """Run save_run's statement under EXPLAIN ANALYZE (it really writes): the server's own
    execution time and each trigger's, in ms, without the commit or the round trip."""
    sql, *args = save_statement(index, preview, features)
    plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args))[0]
    times = {"execution": plan["Execution Time"]}
    for trigger in plan.get("Triggers", []):
        if not trigger["Trigger Name"].startswith("RI_"):
            times[trigger["Trigger Name"]] = trigger["Time"]
    return times


async def pages_touched(conn: asyncpg.Connection, sql: str, *args: object) -> int:
    """Buffer pages a statement's plan touched (hit + read, EXPLAIN ANALYZE BUFFERS): a cost
    measure that the machine's load does not move."""
    plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args))[
        0
    ]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


async def wal_position(conn: asyncpg.Connection) -> str:
    return await conn.fetchval("SELECT pg_current_wal_lsn()::text")


async def wal_bytes_since(conn: asyncpg.Connection, position: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", position
        )
    )


async def sessions_waiting_on_locks(conn: asyncpg.Connection, application_name: str) -> int:
    """Sessions of ``application_name`` waiting on a lock right now."""
    return await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = $1 AND wait_event_type = 'Lock'",
        application_name,
    )


async def vacuum_analyze(conn: asyncpg.Connection) -> None:
    await conn.execute("VACUUM (ANALYZE)")


# Every table and index the runs live in, with the TOAST of each table counted apart.
_SIZES = """
SELECT c.relname AS name,
       CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,
       pg_relation_size(c.oid) AS main_bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END
         AS toast_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')
  AND c.relname LIKE 'activation_run%'
ORDER BY c.relname
"""


async def relation_sizes(conn: asyncpg.Connection) -> list[dict]:
    return [dict(r) for r in await conn.fetch(_SIZES)]


async def column_sizes(conn: asyncpg.Connection, request_id: str) -> dict[str, int]:
    """Stored bytes of each big column of one preview row (pg_column_size)."""
    row = await conn.fetchrow(
        "SELECT pg_column_size(feature_timeline) AS feature_timeline, "
        "pg_column_size(timeline_packed) AS timeline_packed, "
        "pg_column_size(timeline_tokens) AS timeline_tokens, "
        "pg_column_size(output_token_ids) + pg_column_size(prompt_token_ids) AS token_ids, "
        "octet_length(feature_timeline::text) AS feature_timeline_json_text "
        "FROM activation_run_previews WHERE request_id = $1",
        request_id,
    )
    return dict(row) if row else {}

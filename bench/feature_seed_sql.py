"""Bulk SQL of the benchmark seeder over the feature tables (migration 0016): COPY into the
derived tables, index drop/create around a bulk load, and the sizing report's queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg


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

"""Every listing and summary statement reads O(page) rows of activation_run_index, not O(n).

Counted, not timed: each statement runs under EXPLAIN ANALYZE with a generic plan (what a
prepared statement settles on after five runs) on a table of a few thousand runs, and the rows
its plan reads from the index table (returned plus filtered out) must stay within the page.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from backend.db import queries, run_reads

N_RUNS = 6_000
FAILED_EVERY = 200  # rare, so a listing of failed runs without its index reads ~200x a page
PAGE = 50


@pytest.fixture(scope="module")
async def seeded(db_uri) -> str:
    conn = await asyncpg.connect(db_uri)
    try:
        now = datetime.now(UTC)
        template = queries.IndexRow(
            *(None for _ in queries.INDEX_COLUMNS)  # type: ignore[arg-type]
        )
        rows = [
            dataclasses.replace(
                template,
                request_id=f"plan-{i:05d}",
                created_at=now - timedelta(minutes=i),
                updated_at=now,
                model_id=f"model-{i % 3}",
                prompt_preview="p",
                status="failed" if i % FAILED_EVERY == 7 else "ok",
                has_preview=False,
                parse_special_tokens=False,
            )
            for i in range(N_RUNS)
        ]
        await queries.copy_runs(conn, rows, [])
        await conn.execute("ANALYZE activation_run_index")
    finally:
        await conn.close()
    return db_uri


def _index_rows_read(plan: dict) -> float:
    """Rows every node of the plan read from activation_run_index (kept + filtered out)."""
    total = 0.0
    if plan.get("Relation Name") == "activation_run_index":
        loops = plan.get("Actual Loops", 1)
        kept = plan.get("Actual Rows", 0) * loops
        removed = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        total += kept + removed
    for child in plan.get("Plans", []):
        total += _index_rows_read(child)
    return total


def _literal(value: object) -> str:
    """EXPLAIN EXECUTE takes its parameters as SQL literals."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return "'" + str(value).replace("'", "''") + "'"


async def _rows_read(db_uri: str, sql: str, *args) -> float:
    conn = await asyncpg.connect(db_uri)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE q AS {sql}")
        params = f"({', '.join(_literal(a) for a in args)})" if args else ""
        plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q{params}"))[
            0
        ]["Plan"]
        return _index_rows_read(plan)
    finally:
        await conn.close()


async def _middle(db_uri: str) -> tuple[datetime, str]:
    conn = await asyncpg.connect(db_uri)
    try:
        row = await conn.fetchrow(
            "SELECT created_at, request_id FROM activation_run_index "
            "ORDER BY created_at DESC, request_id DESC OFFSET $1 LIMIT 1",
            N_RUNS // 2,
        )
        return row["created_at"], row["request_id"]
    finally:
        await conn.close()


@pytest.mark.parametrize("status", [None, "ok", "failed"])
@pytest.mark.parametrize("deep", [False, True])
async def test_listing_reads_one_page(seeded, status, deep):
    args: list[object] = [PAGE + 1]
    if deep:
        args += list(await _middle(seeded))
    if status:
        args.append(status)
    sql = run_reads.list_runs_sql(after=deep, status=status is not None)
    assert await _rows_read(seeded, sql, *args) <= PAGE + 1


async def test_summary_and_models_read_no_index_rows_but_two(seeded):
    # min/max probe the two ends of the created_at index: one row each.
    assert await _rows_read(seeded, run_reads.SUMMARY_SQL) <= 2
    assert await _rows_read(seeded, run_reads.RUNS_PER_MODEL_SQL, 20) == 0
    conn = await asyncpg.connect(seeded)
    try:
        summary = await run_reads.summary(conn)
        assert summary["total_runs"] == N_RUNS
        assert summary["failed_runs"] == N_RUNS // FAILED_EVERY
    finally:
        await conn.close()

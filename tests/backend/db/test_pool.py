"""The backend's pool releases a connection without a round trip (backend/db/pool.py
``keep_session``), which is safe only while no pooled connection keeps session state: these
tests hold both halves, on the real embedded Postgres."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from backend.db.pool import create_pool
from tests.backend.conftest import backend_settings

BACKEND = Path(__file__).resolve().parents[3] / "backend"
# SQL that would leave state on a session past its transaction: a statement that is a
# session-level SET (SET LOCAL
# and set_config(..., true) end with the transaction), LISTEN, a session advisory lock, a
# held cursor, a temporary table.
SESSION_STATE = re.compile(
    r"[\"']\s*SET\s+(SESSION\s+)?(?!LOCAL\b)[a-z_.]+\s*(=|TO\b)"
    r"|set_config\([^)]*,\s*false\s*\)"
    r"|\bLISTEN\b|pg_advisory_lock\(|pg_try_advisory_lock\(|WITH HOLD|TEMP(ORARY)?\s+TABLE",
    re.IGNORECASE,
)
# Modules that open connections of their own (never the app's pool) for session settings.
OWN_CONNECTIONS = {"backend/db/prune.py"}


@pytest.fixture
async def pool(db_uri, stub_urls):
    pool = await create_pool(backend_settings(db_uri, stub_urls))
    try:
        yield pool
    finally:
        await pool.close()


def queries_sent(conn) -> int:
    return conn._con._protocol.queries_count  # asyncpg's own count of statements sent


async def test_release_sends_nothing(pool: asyncpg.Pool) -> None:
    """One statement, one round trip: the release adds none (asyncpg's default reset added
    one to every use)."""
    async with pool.acquire() as conn:
        raw = conn._con
        before = queries_sent(conn)
        assert await conn.fetchval("SELECT 1") == 1
        assert queries_sent(conn) == before + 1
    async with pool.acquire() as again:
        assert again._con is raw  # the same connection back (pool of one in use)
        assert queries_sent(again) == before + 1


async def test_released_connection_carries_no_transaction_or_local_setting(pool) -> None:
    """What a caller leaves behind is gone for the next: an open transaction is rolled back
    (asyncpg's own part of the reset), a transaction's setting ended with it."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS pool_probe (x int)")
        await conn.execute("TRUNCATE pool_probe")
    holders = []
    async with pool.acquire() as conn:
        holders.append(conn._con)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO pool_probe VALUES (1)")
        await conn.fetchval("SELECT set_config('synchronous_commit', 'off', true)")
        # Left open on purpose: a caller that failed between its statements.
    for _ in range(pool.get_max_size()):
        async with pool.acquire() as conn:
            if conn._con is holders[0]:
                assert not conn.is_in_transaction()
                assert await conn.fetchval("SHOW synchronous_commit") == "on"
                break
    else:
        pytest.fail("the connection did not come back to the pool")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0


def test_no_backend_sql_keeps_session_state() -> None:
    """The other half: nothing on the app's pool sets session state the no-op reset would
    leave for the next request."""
    offenders = []
    for path in sorted(BACKEND.rglob("*.py")):
        rel = path.relative_to(BACKEND.parent).as_posix()
        if rel in OWN_CONNECTIONS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if SESSION_STATE.search(code):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "session state on pooled connections:\n" + "\n".join(offenders)
    assert SESSION_STATE.search('await conn.execute("SET synchronous_commit = off")')
    assert not SESSION_STATE.search("SET LOCAL synchronous_commit = off")

"""0021: ``activation_run_index.trace_id`` (the request id beside a run): added nullable, bounded
at 64 characters for new rows, dropped again by the downgrade, runs kept both ways."""

from __future__ import annotations

import asyncpg
import pytest

from backend.db.migrate import current_revision, downgrade, upgrade
from tests.support.databases import create_database

INSERT = """
INSERT INTO activation_run_index (request_id, created_at, updated_at, model_id, prompt_preview,
                                  status, has_preview{extra_cols})
VALUES ($1, now(), now(), 'm', 'p', 'failed', false{extra_vals})
"""


async def _columns(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'activation_run_index'"
    )
    return {r["column_name"] for r in rows}


async def test_trace_id_column_roundtrip(pg_uri):
    uri = create_database(pg_uri)
    upgrade(uri, "0017_maintain_run_counts")
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute(INSERT.format(extra_cols="", extra_vals=""), "before-0021")
    finally:
        await conn.close()

    upgrade(uri, "0021_run_trace_id")
    assert await current_revision(uri) == "0021_run_trace_id"
    conn = await asyncpg.connect(uri)
    try:
        assert "trace_id" in await _columns(conn)
        old = "SELECT trace_id FROM activation_run_index WHERE request_id = 'before-0021'"
        assert await conn.fetchval(old) is None
        with_id = INSERT.format(extra_cols=", trace_id", extra_vals=", $2")
        await conn.execute(with_id, "after-0021", "x" * 64)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(with_id, "too-long", "x" * 65)
    finally:
        await conn.close()

    downgrade(uri, "0017_maintain_run_counts")
    conn = await asyncpg.connect(uri)
    try:
        assert "trace_id" not in await _columns(conn)
        count = await conn.fetchval("SELECT count(*) FROM activation_run_index")
        assert count == 2
    finally:
        await conn.close()

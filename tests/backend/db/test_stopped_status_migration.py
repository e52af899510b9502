"""Migration 0020: the status check allows ``stopped`` (and nothing else new); downgrading
turns stopped runs into failed ones without previews, as they were stored before it."""

from __future__ import annotations

import asyncpg
import pytest

from backend.db.migrate import current_revision, downgrade, upgrade
from tests.support.databases import create_database

PREVIEW = (
    "INSERT INTO activation_run_previews (request_id, created_at, updated_at, model_id, prompt,"
    " output_text, output_token_ids, prompt_token_ids, feature_timeline)"
    " VALUES ($1, now(), now(), 'm', 'p', 'o', '{1}', '{2}', '[]')"
)


REVISION, BEFORE = "0020_stopped_status", "0019_tombstones_and_quotas"


async def test_0020_allows_stopped_and_downgrades(pg_uri):
    uri = create_database(pg_uri)
    upgrade(uri, REVISION)
    assert await current_revision(uri) == REVISION
    conn = await asyncpg.connect(uri)
    try:
        for request_id, status in (("s1", "stopped"), ("o1", "ok")):
            await conn.execute(
                "INSERT INTO activation_run_index (request_id, model_id, status, has_preview,"
                " error_code) VALUES ($1, 'm', $2, true, $3)",
                request_id,
                status,
                "client_closed" if status == "stopped" else None,
            )
            await conn.execute(PREVIEW, request_id)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO activation_run_index (request_id, model_id, status)"
                " VALUES ('x', 'm', 'paused')"
            )

        downgrade(uri, BEFORE)
        rows = {
            r["request_id"]: (r["status"], r["has_preview"], r["error_code"])
            for r in await conn.fetch("SELECT * FROM activation_run_index")
        }
        assert rows == {"s1": ("failed", False, "client_closed"), "o1": ("ok", True, None)}
        previews = await conn.fetch("SELECT request_id FROM activation_run_previews")
        assert [r["request_id"] for r in previews] == ["o1"]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE activation_run_index SET status = 'stopped'")

        upgrade(uri)
        await conn.execute(
            "UPDATE activation_run_index SET status = 'stopped' WHERE request_id = 's1'"
        )
    finally:
        await conn.close()

"""Alembic upgrade/downgrade against a real server, and adoption of a pre-existing 0013 table."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import httpx
import pytest

from backend.db.migrate import HEAD, current_revision, downgrade, upgrade
from tests.support.databases import create_database


async def _tables(uri: str) -> set[str]:
    conn = await asyncpg.connect(uri)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_upgrade_downgrade_roundtrip(pg_uri):
    uri = create_database(pg_uri)
    upgrade(uri)
    assert await current_revision(uri) == HEAD
    assert {"activation_run_index", "activation_run_previews"} <= await _tables(uri)

    downgrade(uri, "0014_add_activation_run_previews")
    tables = await _tables(uri)
    assert not {"activation_run_owners", "rate_limit_windows", "work_leases"} & tables
    downgrade(uri, "0013_add_activation_run_index")
    assert await current_revision(uri) == "0013_add_activation_run_index"
    tables = await _tables(uri)
    assert "activation_run_previews" not in tables
    assert "activation_run_index" in tables

    # 0013 may have adopted staging's table: it is dropped only when asked for by name.
    with pytest.raises(RuntimeError, match="0013 downgrade refused"):
        downgrade(uri, "base")
    assert await current_revision(uri) == "0013_add_activation_run_index"
    assert "activation_run_index" in await _tables(uri)
    downgrade(uri, "base", drop_run_index=True)
    assert not {"activation_run_index", "activation_run_previews"} & await _tables(uri)

    upgrade(uri)  # and back up again
    assert await current_revision(uri) == HEAD


async def test_previews_schema(pg_uri):
    uri = create_database(pg_uri)
    upgrade(uri)
    conn = await asyncpg.connect(uri)
    try:
        cols = {
            r["column_name"]: r["data_type"]
            for r in await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'activation_run_previews'"
            )
        }
        assert cols["output_token_ids"] == "ARRAY"
        assert cols["prompt_token_ids"] == "ARRAY"
        assert cols["feature_timeline"] == "jsonb"
        indexdef = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'activation_run_previews' "
            "AND indexname = 'activation_run_previews_created_at_idx'"
        )
        assert "created_at DESC" in indexdef
        # Keyed to the index row, and deleted with it.
        await conn.execute(
            "INSERT INTO activation_run_index (request_id, model_id) VALUES ('a', 'm')"
        )
        await conn.execute(
            "INSERT INTO activation_run_previews (request_id, created_at, updated_at, model_id,"
            " prompt, output_text, output_token_ids, feature_timeline)"
            " VALUES ('a', now(), now(), 'm', 'p', 'o', '{1,2}', '[]')"
        )
        await conn.execute("DELETE FROM activation_run_index WHERE request_id = 'a'")
        assert await conn.fetchval("SELECT count(*) FROM activation_run_previews") == 0
        try:
            await conn.execute(
                "INSERT INTO activation_run_previews (request_id, created_at, updated_at,"
                " model_id, prompt, output_text, output_token_ids, feature_timeline)"
                " VALUES ('orphan', now(), now(), 'm', 'p', 'o', '{}', '[]')"
            )
        except asyncpg.ForeignKeyViolationError:
            pass
        else:
            raise AssertionError("a preview without an index row was accepted")
    finally:
        await conn.close()


async def test_0013_adopts_existing_table(pg_uri):
    """Staging already has activation_run_index from the Rust backend's SQL migration."""
    uri = create_database(pg_uri)
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute(
            "CREATE TABLE activation_run_index (request_id TEXT PRIMARY KEY,"
            " created_at TIMESTAMPTZ NOT NULL DEFAULT now(), model_id TEXT)"
        )
        await conn.execute(
            "INSERT INTO activation_run_index (request_id, model_id) VALUES ('legacy', 'old')"
        )
    finally:
        await conn.close()

    upgrade(uri)
    assert await current_revision(uri) == HEAD
    conn = await asyncpg.connect(uri)
    try:
        row = await conn.fetchrow(
            "SELECT request_id, model_id, status, has_preview, prompt_preview "
            "FROM activation_run_index WHERE request_id = 'legacy'"
        )
        assert dict(row) == {
            "request_id": "legacy",
            "model_id": "old",
            "status": "ok",
            "has_preview": False,
            "prompt_preview": "",
        }
        with_bad_status = "UPDATE activation_run_index SET status = 'weird'"
        try:
            await conn.execute(with_bad_status)
        except asyncpg.CheckViolationError:
            pass
        else:
            raise AssertionError("status check constraint missing")
    finally:
        await conn.close()


async def test_0015_on_a_database_that_ran_0014(pg_uri):
    """A database already at 0014 (with runs in it) gets 0015's schema by a plain upgrade; its
    runs stay, with no owner (read-only) and parse_special_tokens false."""
    uri = create_database(pg_uri)
    upgrade(uri, "0014_add_activation_run_previews")
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute(
            "INSERT INTO activation_run_index (request_id, model_id) VALUES ('old-run', 'm')"
        )
    finally:
        await conn.close()
    upgrade(uri)
    assert await current_revision(uri) == HEAD
    assert {"activation_run_owners", "rate_limit_windows", "work_leases"} <= await _tables(uri)
    conn = await asyncpg.connect(uri)
    try:
        row = await conn.fetchrow(
            "SELECT i.parse_special_tokens, o.request_id IS NOT NULL AS owned "
            "FROM activation_run_index i LEFT JOIN activation_run_owners o USING (request_id) "
            "WHERE i.request_id = 'old-run'"
        )
        assert dict(row) == {"parse_special_tokens": False, "owned": False}
    finally:
        await conn.close()


def test_cli_downgrade_needs_confirmation(pg_uri):
    uri = create_database(pg_uri, migrate=True)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "playground.cli", "migrate", "--database-url", uri, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = cli("--downgrade", "0014_add_activation_run_previews")
    assert refused.returncode == 2 and "--confirm-downgrade" in refused.stderr
    assert asyncio.run(current_revision(uri)) == HEAD
    done = cli("--downgrade", "0014_add_activation_run_previews", "--confirm-downgrade")
    assert done.returncode == 0, done.stderr
    assert asyncio.run(current_revision(uri)) == "0014_add_activation_run_previews"


async def test_0017_backfills_counts_and_downgrades(pg_uri):
    """Counts start exact on a database that already has runs; downgrade leaves the schema
    before 0017 and writes keep working; upgrading again counts the runs written meanwhile."""
    from backend.db.migrate import down_revision_of
    from tests.backend.db.test_counters import assert_exact

    before = down_revision_of("0017_maintain_run_counts")
    uri = create_database(pg_uri)
    upgrade(uri, "0014_add_activation_run_previews")
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute(
            "INSERT INTO activation_run_index (request_id, model_id, status, has_preview,"
            " pruned_at, created_at) SELECT 'r' || g, 'm' || g % 3,"
            " CASE WHEN g % 4 = 0 THEN 'failed' ELSE 'ok' END, g % 4 = 1,"
            " CASE WHEN g % 4 = 2 THEN now() END, now() - g * interval '20 minutes'"
            " FROM generate_series(1, 500) g"
        )
        upgrade(uri)
        assert await current_revision(uri) == HEAD
        counts = await assert_exact(conn)
        assert (counts["total_runs"], counts["failed_runs"], counts["pruned_runs"]) == (
            500,
            125,
            125,
        )
        assert 72 <= counts["runs_last_24h"] <= 74  # 20-minute spacing, exact to the hour

        downgrade(uri, before)
        assert await current_revision(uri) == before
        assert not {"activation_run_counts", "activation_run_hours"} & await _tables(uri)
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'activation_run_index'::regclass"
            " AND NOT tgisinternal"
        )
        assert leftovers == 0
        assert await conn.fetchval(
            "SELECT to_regclass('activation_run_index_status_created_at_idx') IS NULL"
        )
        await conn.execute("DELETE FROM activation_run_index WHERE request_id = 'r1'")
        await conn.execute(
            "INSERT INTO activation_run_index (request_id, model_id) VALUES ('late', 'm9')"
        )

        upgrade(uri)
        counts = await assert_exact(conn)
        assert counts["total_runs"] == 500
    finally:
        await conn.close()


# Plausible staging shapes of the Rust backend's table (its DDL is not in the seed): fewer
# columns, nullable ones 0013 declares NOT NULL, VARCHAR/TIMESTAMP for TEXT/TIMESTAMPTZ, a status
# outside ok/failed, NULLs, and an index already named as 0013's keyset index, on other columns.
LEGACY_DDL = [
    "CREATE TABLE activation_run_index (request_id VARCHAR(128) PRIMARY KEY,"
    " created_at TIMESTAMPTZ DEFAULT now(), model_id VARCHAR(256), status VARCHAR(32),"
    " prompt_preview TEXT, error_message TEXT)",
    "CREATE INDEX activation_run_index_created_at_idx ON activation_run_index (created_at)",
    "INSERT INTO activation_run_index (request_id, created_at, model_id, status, prompt_preview)"
    " VALUES ('legacy-ok', now() - interval '2 days', 'old-model', 'ok', 'hello'),"
    " ('legacy-running', now() - interval '1 day', 'old-model', 'running', NULL),"
    " ('legacy-null-model', now() - interval '3 hours', NULL, 'failed', 'p'),"
    " ('legacy-no-status', NULL, 'old-model', NULL, NULL)",
    "UPDATE activation_run_index SET error_message = 'engine exploded'"
    " WHERE request_id = 'legacy-null-model'",
]
LEGACY_IDS = ["legacy-ok", "legacy-running", "legacy-null-model", "legacy-no-status"]


async def _assert_adopted(conn: asyncpg.Connection) -> None:
    rows = {
        r["request_id"]: dict(r)
        for r in await conn.fetch(
            "SELECT request_id, model_id, status, error_code, error_message, prompt_preview,"
            " created_at = 'epoch'::timestamptz AS epoch FROM activation_run_index"
        )
    }
    assert rows["legacy-ok"] == {"request_id": "legacy-ok", "model_id": "old-model",
        "status": "ok", "error_code": None, "error_message": None, "prompt_preview": "hello",
        "epoch": False}  # fmt: skip
    assert rows["legacy-running"]["status"] == "failed"
    assert rows["legacy-running"]["error_code"] == "legacy_status"
    assert rows["legacy-running"]["error_message"] == "legacy status: running"
    assert rows["legacy-null-model"]["model_id"] == ""
    assert rows["legacy-null-model"]["error_message"] == "engine exploded"  # kept
    assert rows["legacy-no-status"]["status"] == "failed" and rows["legacy-no-status"]["epoch"]
    nullable = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name ="
        " 'activation_run_index' AND is_nullable = 'YES' AND column_name = ANY($1)",
        ["created_at", "updated_at", "model_id", "prompt_preview", "status", "has_preview"],
    )
    assert nullable == []
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'activation_run_index'"
        )
    }
    assert indexes["activation_run_index_created_at_idx"].endswith(
        "USING btree (created_at DESC, request_id DESC)"
    )
    assert indexes["activation_run_index_created_at_idx_legacy"].endswith("(created_at)")
    # The status check holds, validated, for every row.
    assert await conn.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'activation_run_index_status_check'"
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE activation_run_index SET status = 'weird'")


async def _read_through_the_api(uri: str, stub_urls, conn: asyncpg.Connection) -> None:
    from backend.app import create_app
    from tests.backend.conftest import backend_settings
    from tests.backend.db.test_counters import assert_exact
    from tests.support.servers import serve_app

    with serve_app(create_app(backend_settings(uri, stub_urls))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            listed = (await http.get("/playground/activations/runs?limit=50")).json()
            assert [r["request_id"] for r in listed["runs"]] == [
                "legacy-null-model", "legacy-running", "legacy-ok", "legacy-no-status"
            ]  # fmt: skip
            failed = (await http.get("/playground/activations/runs?status=failed")).json()
            assert {r["request_id"] for r in failed["runs"]} == set(LEGACY_IDS) - {"legacy-ok"}
            running = (await http.get("/playground/activations/legacy-running")).json()
            assert running["status"] == "failed"
            assert running["error"]["code"] == "legacy_status"
            # A legacy success has no preview: read as pruned.
            assert (await http.get("/playground/activations/legacy-ok")).status_code == 410
            counts = await assert_exact(conn, http)
            assert (counts["total_runs"], counts["failed_runs"]) == (4, 3)


async def test_0013_adopts_legacy_shapes(pg_uri, stub_urls):
    """A legacy table of plausible staging shape migrates to head; its rows are normalised,
    listed and read through the API."""
    uri = create_database(pg_uri)
    conn = await asyncpg.connect(uri)
    try:
        for statement in LEGACY_DDL:
            await conn.execute(statement)
        upgrade(uri)
        assert await current_revision(uri) == HEAD
        await _assert_adopted(conn)
        await _read_through_the_api(uri, stub_urls, conn)
    finally:
        await conn.close()


async def test_0017_for_a_database_that_adopted_with_the_earlier_0013(pg_uri, stub_urls):
    """A database that ran the earlier 0013 on a legacy table (nullable columns, a NULL
    model_id, the legacy index under 0013's name) and 0014-0016: 0017's normalising step gives
    it the same schema as a fresh adoption."""
    uri = create_database(pg_uri)
    upgrade(uri, "0016_feature_explorer")
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute("DROP INDEX activation_run_index_created_at_idx")
        await conn.execute(
            "CREATE INDEX activation_run_index_created_at_idx ON activation_run_index (created_at)"
        )
        for column in ("created_at", "model_id", "prompt_preview", "status"):
            await conn.execute(f"ALTER TABLE activation_run_index ALTER {column} DROP NOT NULL")
        await conn.execute(LEGACY_DDL[2].replace("'running'", "'failed'"))
        await conn.execute(
            "UPDATE activation_run_index SET error_code = 'legacy_status', error_message ="
            " 'legacy status: running' WHERE request_id = 'legacy-running'"
        )
        await conn.execute(LEGACY_DDL[3])
        upgrade(uri)
        assert await current_revision(uri) == HEAD
        await _assert_adopted(conn)
        await _read_through_the_api(uri, stub_urls, conn)
    finally:
        await conn.close()

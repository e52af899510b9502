"""Migration 0016 on a database that already has runs: it backfills every run's aggregate from
the stored JSON timeline, byte for byte what the run path builds from the packed one, queues
them, and the fold then answers the brute force."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson

from backend.activations import aggregate, packed, storage
from backend.activations.record import (
    Extraction,
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
)
from backend.app import create_app
from backend.db import queries
from backend.db.migrate import HEAD, current_revision, downgrade, upgrade
from backend.features import fold
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.backend.features.test_explorer import check
from tests.support.databases import create_database
from tests.support.servers import REPO_ROOT, serve_app

BEFORE = "0015_staging_safety"  # the revision before 0016
MIGRATION = REPO_ROOT / "migrations/versions/0016_feature_explorer.py"


def record(i: int, *, status="ok", collect=True) -> RunRecord:
    prompt_ids = stubs.prompt_token_ids(f"backfill prompt {i} " * (1 + i % 3), chat=True)
    output_ids = stubs.output_token_ids(f"backfill {i}", 10)
    ids = prompt_ids + output_ids
    entries = stubs.timeline(ids, 20, len(prompt_ids))
    if i % 4 == 3:
        entries[5]["features"] = []  # positions without features happen
    timeline, tokens = packed.from_entries(entries)
    gen = Generation("m", "out", output_ids, prompt_ids, "stop")
    ext = Extraction(
        "llama_scope_lxr_8x", 16, 20, timeline, tokens, orjson.dumps(entries)
    ) if collect else None  # fmt: skip
    if status == "failed":
        return RunRecord.failed(
            request_id=f"old-{i:03d}",
            created_at=datetime.now(UTC),
            model_id="m",
            prompt=f"backfill prompt {i}",
            generation=gen,
            failure=RunFailure("upstream_error", "boom", "sae"),
            timings=RunTimings(),
        )
    return RunRecord.ok(
        request_id=f"old-{i:03d}",
        created_at=datetime.now(UTC),
        prompt=f"backfill prompt {i}",
        generation=gen,
        extraction=ext,
        timings=RunTimings(),
    )


async def copy_at_revision(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: list
) -> None:
    """COPY today's rows into a table as an older revision has it: the columns that revision
    lacks (added by later migrations, e.g. 0021's trace_id) are left out."""
    present = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
        )
    }
    kept = [c for c in columns if c in present]
    records = [tuple(getattr(row, c) for c in kept) for row in rows]
    await conn.copy_records_to_table(table, records=records, columns=kept)


async def test_backfill_on_existing_runs(pg_uri, stub_urls):
    uri = create_database(pg_uri)
    upgrade(uri, BEFORE)
    # More runs than one backfill batch (200), so the batching is exercised.
    records = [record(i) for i in range(1, 231)]
    records += [record(900, collect=False), record(901, status="failed")]
    conn = await asyncpg.connect(uri)
    try:
        index = [storage.index_row(r) for r in records]
        previews = [p for p in (storage.preview_row(r) for r in records) if p is not None]
        await copy_at_revision(conn, "activation_run_index", queries.INDEX_COLUMNS, index)
        await copy_at_revision(conn, "activation_run_previews", queries.PREVIEW_COLUMNS, previews)
    finally:
        await conn.close()

    upgrade(uri)
    assert await current_revision(uri) == HEAD
    conn = await asyncpg.connect(uri)
    try:
        rows = {
            r["request_id"]: r for r in await conn.fetch("SELECT * FROM activation_run_features")
        }
        with_features = [r for r in records if r.extraction is not None]
        assert set(rows) == {r.request_id for r in with_features}
        for r in with_features:
            built = storage.features_row(r)
            assert rows[r.request_id]["data"] == built.data, r.request_id
            assert rows[r.request_id]["n_positions"] == built.n_positions
        queued = await conn.fetchval("SELECT count(*) FROM feature_pending_runs")
        assert queued == len(with_features)
    finally:
        await conn.close()

    settings = backend_settings(uri, stub_urls, playground_feature_fold=False)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            conn = await asyncpg.connect(uri)
            pool = await asyncpg.create_pool(uri, min_size=1, max_size=2)
            try:
                some = [0, 3, 7, 12, 25, 39]
                assert await check(client, conn, some, listing_limit=100) == len(some)
                assert await fold.fold_all(pool) == len(with_features)
                await check(client, conn, some, listing_limit=40)
            finally:
                await pool.close()
                await conn.close()

    downgrade(uri, BEFORE)
    upgrade(uri)  # and up again: the backfill runs a second time, on the same runs
    assert await current_revision(uri) == HEAD


def test_migration_bins_like_the_app():
    """The migration carries its own copy of the histogram edges; they must be the app's."""
    spec = importlib.util.spec_from_file_location("migration_0016", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.HIST_EDGES == aggregate.HIST_EDGES
    assert module.N_BINS == aggregate.N_BINS

"""The bulk fold (the benchmark seeder's) leaves exactly the tables the incremental fold does."""

from __future__ import annotations

from dataclasses import astuple

import asyncpg

from backend.activations import aggregate, storage
from backend.activations.aggregate import HIST_EDGES
from backend.db import fold_sql, queries
from backend.features import fold
from bench import feature_seed_sql
from bench.bulk_fold import BulkFold
from tests.backend.features.test_backfill import record
from tests.support.databases import create_database

TABLES = {
    "feature_saes": "SELECT sae_id, layer, runs_total, positions_total FROM feature_saes",
    "feature_stats": "SELECT * FROM feature_stats ORDER BY sae_key, feature_id",
    "feature_hist": "SELECT * FROM feature_hist ORDER BY sae_key, feature_id, bin",
    "feature_top_runs": "SELECT * FROM feature_top_runs ORDER BY sae_key, feature_id, request_id",
    "feature_run_members": "SELECT * FROM feature_run_members ORDER BY request_id",
}


async def snapshot(conn) -> dict:
    return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in TABLES.items()}


async def test_bulk_equals_incremental(pg_uri):
    records = [record(i) for i in range(1, 41)]
    incremental, bulk = create_database(pg_uri, migrate=True), create_database(pg_uri, migrate=True)

    pool = await asyncpg.create_pool(incremental, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        for r in records:
            rows = storage.rows(r)
            await queries.save_run(conn, rows.index, rows.preview, rows.features)
        versions = dict(
            tuple(v)
            for v in await conn.fetch("SELECT request_id, version FROM activation_run_features")
        )
    assert await fold.fold_all(pool, batch=7) == len(records)
    async with pool.acquire() as conn:
        expected = await snapshot(conn)
    await pool.close()
    assert any(r[4] for r in expected["feature_stats"]), "some boards should be full"

    conn = await asyncpg.connect(bulk)
    try:
        keys = await fold_sql.sae_keys(conn, [("llama_scope_lxr_8x", 16)], HIST_EDGES)
        folder = BulkFold(keys[("llama_scope_lxr_8x", 16)])
        rows = [storage.rows(r) for r in records]
        await queries.copy_runs(conn, [r.index for r in rows], [r.preview for r in rows])
        await feature_seed_sql.copy_rows(
            conn,
            "activation_run_features",
            [*queries.FEATURES_COLUMNS, "version"],
            [(*astuple(r.features), versions[r.index.request_id]) for r in rows],
        )
        for r in rows:
            run = aggregate.decode(r.features.data, r.features.n_positions)
            folder.add(r.index.request_id, versions[r.index.request_id], run)
        await folder.write(conn)
        await feature_seed_sql.after_bulk_load(conn, max(versions.values()))
        assert await snapshot(conn) == expected
        assert (await feature_seed_sql.queue_sizes(conn))["runs"] == 0
    finally:
        await conn.close()

"""0017's maintained counts equal brute-force counts of activation_run_index after every kind
of write: runs through the API (new, re-run ok->failed, failed->ok, model change, activations
dropped), prunes, deletes, concurrent writers, and an older backend's plain SQL."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from backend.activations import storage
from backend.activations.record import Generation, RunFailure, RunRecord, RunTimings
from backend.app import create_app
from backend.db import queries, run_reads
from backend.db.prune import prune_previews
from bench.run_seed_sql import brute_counts
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

OTHER_MODEL = "other/model-b"

# The reference: what summary computed before 0017, by counting the whole table (the counts are
# the benchmark's own brute force, bench/run_seed_sql.py), plus the first and last run.
BRUTE_SPAN = (
    "SELECT min(created_at) AS first_run_at, max(created_at) AS last_run_at "
    "FROM activation_run_index"
)
BRUTE_MODELS = (
    "SELECT model_id, count(*) AS runs FROM activation_run_index "
    "GROUP BY model_id ORDER BY runs DESC, model_id"
)


async def assert_exact(db: asyncpg.Connection, client: httpx.AsyncClient | None = None) -> dict:
    """The maintained numbers (and the summary endpoint, when given) equal brute force."""
    brute = await brute_counts(db) | dict(await db.fetchrow(BRUTE_SPAN))
    models = [dict(r) for r in await db.fetch(BRUTE_MODELS)]
    assert dict(await run_reads.summary(db)) == brute
    assert [dict(r) for r in await run_reads.runs_per_model(db, 1000)] == models
    if client is not None:
        answer = (await client.get("/playground/activations/summary")).json()
        for key in ("total_runs", "ok_runs", "failed_runs", "with_preview", "pruned_runs"):
            assert answer[key] == brute[key], key
        assert answer["runs_last_24h"] == brute["runs_last_24h"]
        for key in ("first_run_at", "last_run_at"):
            stamp = answer[key] and datetime.fromisoformat(answer[key])
            assert stamp == brute[key], key
        assert answer["models"] == models[:20]
    return brute


@pytest.fixture(scope="module")
def two_model_url(db_uri, stub_urls):
    settings = backend_settings(db_uri, stub_urls, playground_activation_models=[OTHER_MODEL])
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture
async def api(two_model_url):
    async with httpx.AsyncClient(base_url=two_model_url, timeout=30) as http:
        yield http


OWNERS: dict[str, str] = {}


async def _run(api: httpx.AsyncClient, request_id: str, **extra) -> int:
    """A run through the API; a re-run goes as the run's owner."""
    body = {"prompt": f"prompt {request_id}", "request_id": request_id, **extra}
    owner = OWNERS.get(request_id)
    headers = {"X-Run-Owner": owner} if owner else {}
    response = await api.post("/playground/activations/run", json=body, headers=headers)
    # A new run's token: in the answer, or in the X-Run-Owner header of its error answer.
    token = response.headers.get("X-Run-Owner")
    if response.status_code == 200:
        token = response.json().get("owner_token") or token
    if token:
        OWNERS[request_id] = token
    return response.status_code


async def test_counts_follow_runs_reruns_prunes_and_deletes(api, db, stub_states):
    await db.execute("TRUNCATE activation_run_index CASCADE")
    assert (await assert_exact(db, api))["total_runs"] == 0

    for rid in ("c-a1", "c-a2", "c-a3"):
        assert await _run(api, rid) == 200
    stub_states["engine"].mode = "error500"
    assert await _run(api, "c-b1") == 502  # stored as a failed run
    stub_states["engine"].mode = "ok"
    counts = await assert_exact(db, api)
    assert (counts["ok_runs"], counts["failed_runs"], counts["with_preview"]) == (3, 1, 3)

    stub_states["engine"].mode = "error500"
    assert await _run(api, "c-a1") == 502  # a failure never replaces a run that succeeded
    stub_states["engine"].mode = "ok"
    assert (await assert_exact(db, api))["ok_runs"] == 3
    assert await _run(api, "c-b1") == 200  # failed -> ok (a failed run's id stays claimed)
    assert await _run(api, "c-a2", model_id=OTHER_MODEL) == 200  # model change
    assert await _run(api, "c-a3", collect_activations=False) == 200  # no preview any more
    counts = await assert_exact(db, api)
    assert (counts["ok_runs"], counts["failed_runs"], counts["with_preview"]) == (4, 0, 3)
    models = {m["model_id"]: m["runs"] for m in await run_reads.runs_per_model(db)}
    assert models[OTHER_MODEL] == 1

    await db.execute(
        "UPDATE activation_run_previews SET created_at = now() - interval '8 days' "
        "WHERE request_id IN ('c-a2', 'c-b1')"
    )
    done = await prune_previews(db, timedelta(days=7), batch_size=1)
    assert (done.pruned, done.batches) == (2, 2)
    counts = await assert_exact(db, api)
    assert (counts["pruned_runs"], counts["with_preview"]) == (2, 1)

    assert await _run(api, "c-a2") == 200  # a pruned run re-run: no longer pruned
    assert (await assert_exact(db, api))["pruned_runs"] == 1

    # The owner's DELETE, and a delete by hand.
    deleted = await api.delete(
        "/playground/activations/c-a1", headers={"X-Run-Owner": OWNERS["c-a1"]}
    )
    assert deleted.status_code == 204
    await db.execute("DELETE FROM activation_run_index WHERE request_id = 'c-a2'")
    assert (await assert_exact(db, api))["total_runs"] == 2


async def test_runs_last_24h_is_exact_to_the_hour(api, db):
    await db.execute("TRUNCATE activation_run_index CASCADE")
    now = await db.fetchval("SELECT now()")
    ages_h = [0, 1, 5, 23, 23.9, 24.5, 25.5, 30, 24 * 9, -2]  # -2: a writer's clock ahead
    for i, age in enumerate(ages_h):
        assert await _run(api, f"h-{i}") == 200
        await db.execute(
            "UPDATE activation_run_index SET created_at = $2 WHERE request_id = $1",
            f"h-{i}",
            now - timedelta(hours=age),
        )
    counts = await assert_exact(db, api)
    # Exact to the hour: everything since the start of the UTC hour 24 hours ago.
    window_start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    expected = sum(1 for a in ages_h if now - timedelta(hours=a) >= window_start - timedelta(1))
    assert counts["runs_last_24h"] == expected
    assert 6 <= expected <= 7  # 24.5 h ago is inside when past the half hour


async def test_concurrent_writers_and_prune_keep_counts_exact(db, db_uri):
    """Writers on separate connections (separate counter shards) racing on shared ids, with a
    prune in between; every write goes through the real save_run."""
    await db.execute("TRUNCATE activation_run_index CASCADE")
    base = datetime.now(UTC)
    models = ["m-1", "m-2", "m-3"]

    def record(rid: str, rng: random.Random) -> RunRecord:
        failed = rng.random() < 0.3
        generation = Generation(rng.choice(models), "out", [5, 6], [1, 2], "stop")
        created = base - timedelta(days=rng.choice([0, 0, 10]))
        if failed:
            return RunRecord.failed(
                request_id=rid,
                created_at=created,
                model_id=generation.model_id,
                prompt="p",
                generation=None,
                failure=RunFailure("upstream_error", "boom", "engine"),
                timings=RunTimings(),
            )
        return RunRecord.ok(
            request_id=rid,
            created_at=created,
            prompt="p",
            generation=generation,
            extraction=None,
            timings=RunTimings(),
        )

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        conn = await asyncpg.connect(db_uri)
        try:
            for _ in range(40):
                rec = record(f"cc-{rng.randrange(25)}", rng)
                for attempt in range(5):
                    try:
                        await queries.save_run(
                            conn, storage.index_row(rec), storage.preview_row(rec)
                        )
                        break
                    except asyncpg.DeadlockDetectedError:  # pragma: no cover - must not happen
                        if attempt == 4:
                            raise
        finally:
            await conn.close()

    async def pruner() -> None:
        conn = await asyncpg.connect(db_uri)
        try:
            for _ in range(10):
                await prune_previews(conn, timedelta(days=7), batch_size=3)
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    await asyncio.gather(*(writer(s) for s in range(6)), pruner())
    shards = await db.fetchval("SELECT count(DISTINCT shard) FROM activation_run_counts")
    assert shards > 1  # the writers really spread over counter rows
    counts = await assert_exact(db)
    assert counts["total_runs"] == 25


async def test_older_backend_plain_sql_keeps_counts_exact(db):
    """Rollback safety: the 0014-era statements, as the code before 0017 sent them."""
    await db.execute("TRUNCATE activation_run_index CASCADE")
    old_upsert = """
WITH idx AS (
  INSERT INTO activation_run_index (request_id, created_at, updated_at, model_id, prompt_preview,
    status, error_code, error_message, error_upstream, prompt_tokens, output_tokens,
    finish_reason, sae_id, sae_layer, sae_top_k, has_preview, engine_ms, sae_ms, total_ms)
  VALUES ($1, $2, $2, $3, 'p', $4, NULL, NULL, NULL, 2, 2, 'stop', 's', 16, 20, $5, 1, 1, 2)
  ON CONFLICT (request_id) DO UPDATE SET created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, model_id = EXCLUDED.model_id,
    status = EXCLUDED.status, has_preview = EXCLUDED.has_preview, pruned_at = NULL
  RETURNING request_id
)
INSERT INTO activation_run_previews (request_id, created_at, updated_at, model_id, prompt,
  output_text, output_token_ids, prompt_token_ids, finish_reason, sae_id, sae_layer, sae_top_k,
  feature_timeline)
SELECT idx.request_id, $2, $2, $3, 'p', 'o', '{1}', '{2}', 'stop', 's', 16, 20, '[]' FROM idx
ON CONFLICT (request_id) DO UPDATE SET created_at = EXCLUDED.created_at
"""
    now = datetime.now(UTC)
    old = now - timedelta(days=9)
    for rid, model, created in (("o-1", "m", old), ("o-2", "m", old), ("o-3", "n", now)):
        await db.execute(old_upsert, rid, created, model, "ok", True)
    await assert_exact(db)
    await db.execute(old_upsert, "o-3", now, "m", "ok", True)  # re-run, model change
    await assert_exact(db)

    # The old one-statement prune.
    async with db.transaction():
        ids = [
            r["request_id"]
            for r in await db.fetch(
                "DELETE FROM activation_run_previews WHERE created_at < now() - $1::interval "
                "RETURNING request_id",
                timedelta(days=7),
            )
        ]
        await db.execute(
            "UPDATE activation_run_index SET pruned_at = now(), has_preview = false "
            "WHERE request_id = ANY($1::text[])",
            ids,
        )
    assert (await assert_exact(db))["pruned_runs"] == 2

    # Multi-row INSERT, COPY, a status flip by hand, DELETE, TRUNCATE.
    await db.execute(
        "INSERT INTO activation_run_index (request_id, model_id, status, created_at) VALUES "
        "('o-4', 'm', 'failed', now() - interval '2 days'), ('o-5', 'x', 'ok', now())"
    )
    await db.copy_records_to_table(
        "activation_run_index",
        records=[(f"o-c{i}", "copied", "ok", now) for i in range(50)],
        columns=["request_id", "model_id", "status", "created_at"],
    )
    await assert_exact(db)
    await db.execute("UPDATE activation_run_index SET status = 'failed' WHERE model_id = 'copied'")
    await db.execute("DELETE FROM activation_run_index WHERE request_id LIKE 'o-c1%'")
    counts = await assert_exact(db)
    assert counts["failed_runs"] == 40
    await db.execute("TRUNCATE activation_run_index CASCADE")
    assert (await assert_exact(db))["total_runs"] == 0

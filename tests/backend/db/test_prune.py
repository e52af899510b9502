"""`playground prune`: old previews go, index rows stay; reads of a pruned run answer 410."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest

from tests.support.servers import REPO_ROOT


async def test_prune_marks_runs_gone(client, db, db_uri):
    owners = {}
    for request_id in ("old-1", "old-2", "fresh-1"):
        response = await client.post(
            "/playground/activations/run", json={"prompt": "x", "request_id": request_id}
        )
        assert response.status_code == 200
        owners[request_id] = response.json()["owner_token"]
    await db.execute(
        "UPDATE activation_run_previews SET created_at = now() - interval '8 days' "
        "WHERE request_id IN ('old-1', 'old-2')"
    )

    # The real command, as `playground prune --older-than 7d` runs it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "playground.cli",
        "prune",
        "--older-than",
        "7d",
        "--database-url",
        db_uri,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    assert b"pruned 2 previews" in stdout

    previews = {
        r["request_id"] for r in await db.fetch("SELECT request_id FROM activation_run_previews")
    }
    assert "fresh-1" in previews and not {"old-1", "old-2"} & previews
    index = {
        r["request_id"]: r
        for r in await db.fetch(
            "SELECT request_id, pruned_at, has_preview FROM activation_run_index"
        )
    }
    assert index["old-1"]["pruned_at"] is not None and not index["old-1"]["has_preview"]
    assert index["fresh-1"]["pruned_at"] is None and index["fresh-1"]["has_preview"]

    for path in ("", "/rows", "/top-features"):
        gone = await client.get(f"/playground/activations/old-1{path}")
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"]["code"] == "gone"
        assert (await client.get(f"/playground/activations/fresh-1{path}")).status_code == 200
        assert (await client.get(f"/playground/activations/never-ran{path}")).status_code == 404

    runs = (await client.get("/playground/activations/runs", params={"limit": 200})).json()["runs"]
    pruned = {r["request_id"]: r["pruned"] for r in runs}
    assert pruned["old-1"] is True and pruned["fresh-1"] is False
    summary = (await client.get("/playground/activations/summary")).json()
    assert summary["pruned_runs"] == 2

    # A re-run of a pruned id by its owner brings it back.
    rerun = await client.post(
        "/playground/activations/run",
        json={"prompt": "y", "request_id": "old-1"},
        headers={"X-Run-Owner": owners["old-1"]},
    )
    assert rerun.status_code == 200
    assert (await client.get("/playground/activations/old-1/rows")).status_code == 200


async def test_missing_preview_is_gone(client, db):
    """An index row whose preview vanished some other way also answers 410, not 500."""
    response = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "vanished"}
    )
    assert response.status_code == 200
    await db.execute("DELETE FROM activation_run_previews WHERE request_id = 'vanished'")
    assert (await client.get("/playground/activations/vanished/rows")).status_code == 410
    assert (await client.get("/playground/activations/vanished")).status_code == 410


def test_parse_duration():
    import argparse

    import pytest

    from backend.cli import parse_duration

    assert parse_duration("7d").days == 7
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("2w").days == 14
    for bad in ("7", "d", "-1d", "7y", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


async def _old_runs(client, db, ids: list[str]) -> None:
    for request_id in ids:
        response = await client.post(
            "/playground/activations/run", json={"prompt": "x", "request_id": request_id}
        )
        assert response.status_code == 200
    await db.execute(
        "UPDATE activation_run_previews SET created_at = now() - interval '30 days' "
        "WHERE request_id = ANY($1::text[])",
        ids,
    )


async def test_prune_runs_in_batches_and_resumes(client, db):
    from backend.db.prune import prune_previews

    await db.execute("TRUNCATE activation_run_index CASCADE")
    await _old_runs(client, db, [f"batch-{i}" for i in range(5)])
    await client.post("/playground/activations/run", json={"prompt": "x", "request_id": "new"})
    seen = []

    # Stopped after one batch: that batch is committed, the rest still there.
    first = await prune_previews(db, timedelta(days=7), batch_size=2, max_batches=1)
    assert (first.batches, first.pruned) == (1, 2)
    assert await db.fetchval("SELECT count(*) FROM activation_run_previews") == 4

    # The next prune picks up the rest, reporting each batch.
    rest = await prune_previews(db, timedelta(days=7), batch_size=2, on_batch=seen.append)
    assert (rest.batches, rest.pruned) == (2, 3)
    assert [p.pruned for p in seen] == [2, 3]
    assert all(p.cutoff == rest.cutoff for p in seen)
    assert await db.fetchval("SELECT array_agg(request_id) FROM activation_run_previews") == ["new"]
    assert (
        await db.fetchval("SELECT count(*) FROM activation_run_index WHERE pruned_at IS NOT NULL")
        == 5
    )
    nothing = await prune_previews(db, timedelta(days=7))
    assert (nothing.batches, nothing.pruned) == (0, 0)

    with pytest.raises(ValueError):
        await prune_previews(db, timedelta(days=7), batch_size=0)


async def test_prune_skips_a_run_being_written(client, db, db_uri):
    """A row a writer holds is skipped, not waited for; the next prune takes it."""
    import asyncpg

    from backend.db.prune import prune_previews

    await db.execute("TRUNCATE activation_run_index CASCADE")
    await _old_runs(client, db, ["held", "free-1", "free-2"])
    writer = await asyncpg.connect(db_uri)
    try:
        tx = writer.transaction()
        await tx.start()
        await writer.execute(
            "SELECT 1 FROM activation_run_index WHERE request_id = 'held' FOR UPDATE"
        )
        # Waiting on the writer's lock would fail here instead of passing slowly.
        await db.execute("SET lock_timeout = '5s'")
        done = await prune_previews(db, timedelta(days=7), batch_size=10)
        assert done.pruned == 2
        await tx.rollback()
    finally:
        await writer.close()
        await db.execute("RESET lock_timeout")
    again = await prune_previews(db, timedelta(days=7), batch_size=10)
    assert again.pruned == 1
    assert await db.fetchval("SELECT count(*) FROM activation_run_previews") == 0


def test_prune_rejects_a_bad_batch_size():
    import subprocess

    for bad in ("0", "10001", "ten"):
        proc = subprocess.run(
            [sys.executable, "-m", "playground.cli", "prune", "--batch-size", bad],
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 2, bad
        assert b"--batch-size" in proc.stderr


async def test_a_rerun_between_mark_and_delete_keeps_its_preview(client, db, db_uri):
    """The prune marks a batch, then deletes its previews; a re-run landing in between (here:
    holding the preview row until the delete waits on it) keeps its new preview."""
    import asyncpg

    from backend.db.prune import prune_previews
    from tests.backend.db.test_counters import assert_exact

    await db.execute("TRUNCATE activation_run_index CASCADE")
    await _old_runs(client, db, ["rerun", "plain"])
    writer = await asyncpg.connect(db_uri)
    watcher = await asyncpg.connect(db_uri)
    try:
        tx = writer.transaction()
        await tx.start()
        await writer.execute(
            "UPDATE activation_run_previews SET created_at = now(), updated_at = now() "
            "WHERE request_id = 'rerun'"
        )
        prune = asyncio.create_task(prune_previews(db, timedelta(days=7), batch_size=10))
        for _ in range(1000):  # until the prune's delete waits on the writer's row
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%DELETE FROM activation_run_previews%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the prune never reached the delete")
        marked = await watcher.fetchval(
            "SELECT pruned_at IS NOT NULL FROM activation_run_index WHERE request_id = 'rerun'"
        )
        assert marked  # the mark committed before the delete
        await writer.execute(
            "UPDATE activation_run_index SET pruned_at = NULL, has_preview = true, "
            "created_at = now() WHERE request_id = 'rerun'"
        )
        await tx.commit()
        done = await prune
    finally:
        await writer.close()
        await watcher.close()
    assert done.pruned == 1
    kept = await db.fetch("SELECT request_id FROM activation_run_previews")
    assert [r["request_id"] for r in kept] == ["rerun"]
    row = await db.fetchrow(
        "SELECT pruned_at, has_preview FROM activation_run_index WHERE request_id = 'rerun'"
    )
    assert row["pruned_at"] is None and row["has_preview"]
    assert (await client.get("/playground/activations/rerun/rows")).status_code == 200
    assert (await client.get("/playground/activations/plain/rows")).status_code == 410
    await assert_exact(db, client)


async def test_prune_and_reruns_together_no_deadlock(client, db_uri):
    """Prune (every preview, over and over) racing owners re-running the same runs: both take
    the index rows first, so neither deadlocks nor answers 500."""
    import asyncpg

    from backend.db.prune import prune_previews

    ids = [f"race-prune-{i}" for i in range(12)]
    owners = {}
    for rid in ids:
        response = await client.post(
            "/playground/activations/run", json={"prompt": f"p {rid}", "request_id": rid}
        )
        assert response.status_code == 200
        owners[rid] = response.json()["owner_token"]

    async def reruns() -> list[int]:
        statuses = []
        for round_ in range(4):
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/playground/activations/run",
                        json={"prompt": f"round {round_}", "request_id": rid},
                        headers={"X-Run-Owner": owners[rid]},
                    )
                    for rid in ids
                )
            )
            statuses += [a.status_code for a in answers]
        return statuses

    async def prunes(stop: asyncio.Event) -> int:
        conn = await asyncpg.connect(db_uri)
        count = 0
        try:
            while not stop.is_set():
                await prune_previews(conn, timedelta(0))
                count += 1
        finally:
            await conn.close()
        return count

    stop = asyncio.Event()
    pruning = asyncio.ensure_future(prunes(stop))
    try:
        statuses = await asyncio.wait_for(reruns(), 120)
    finally:
        stop.set()
    assert await asyncio.wait_for(pruning, 60) > 0
    assert statuses == [200] * len(statuses)


async def test_prune_stops_after_its_time_budget(client, db):
    """``max_seconds`` (Modal's cron): the batch that ends past the budget is the last one."""
    from backend.db.prune import prune_previews

    await db.execute("TRUNCATE activation_run_index CASCADE")
    await _old_runs(client, db, [f"budget-{i}" for i in range(3)])
    none = await prune_previews(db, timedelta(days=7), batch_size=1, max_seconds=0)
    assert (none.batches, none.pruned) == (0, 0)
    one = await prune_previews(db, timedelta(days=7), batch_size=1, max_seconds=1e-9)
    assert (one.batches, one.pruned) == (1, 1)
    rest = await prune_previews(db, timedelta(days=7), batch_size=1)
    assert (rest.batches, rest.pruned) == (2, 2)

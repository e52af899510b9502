"""`playground prune`: old previews go, index rows stay; reads of a pruned run answer 410."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

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


async def test_prune_and_reruns_together_no_deadlock(client, db_uri):
    """Prune (every preview, over and over) racing owners re-running the same runs: both take
    the index rows first, so neither deadlocks nor answers 500."""
    import asyncpg

    from backend.db import queries

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
                await queries.prune_previews(conn, timedelta(0))
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

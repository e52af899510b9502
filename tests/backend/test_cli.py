"""`playground backend` with no DATABASE_URL: embedded Postgres, migrated, served, stopped."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import httpx

from backend.db.migrate import HEAD
from tests.support.servers import REPO_ROOT, serve_subcommand


async def test_backend_on_embedded_postgres(tmp_path, stub_urls, artifacts_dir):
    data_dir = tmp_path / "data"
    env = {
        "DATABASE_URL": "",
        "PLAYGROUND_DATA_DIR": str(data_dir),
        "PLAYGROUND_ACTIVATIONS_HF_URL": stub_urls["engine"],
        "PLAYGROUND_SAE_URL": stub_urls["sae"],
    }
    with serve_subcommand(["backend"], log_path=artifacts_dir / "backend-cli.log", env=env) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            run = await client.post(
                "/playground/activations/run", json={"prompt": "hi", "request_id": "cli-1"}
            )
            assert run.status_code == 200, run.text
            rows = await client.get("/playground/activations/cli-1/rows")
            assert rows.status_code == 200 and rows.json()["total"] > 0
            health = (await client.get("/playground/activations/health")).json()
            assert health["postgres"]["ok"]
    pgdata = data_dir / "pg"
    assert (pgdata / "PG_VERSION").exists()
    # SIGTERM stopped the server too (no postmaster left behind).
    assert await asyncio.to_thread(_gone, pgdata / "postmaster.pid")

    # `playground migrate` on the same (now stopped) embedded data dir restarts it and reports.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "playground.cli",
        "migrate",
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    assert HEAD.encode() in stdout


def _gone(path, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def test_help_lists_subcommands():
    import subprocess

    for sub in ("backend", "migrate", "prune"):
        out = subprocess.run(
            [sys.executable, "-m", "playground.cli", sub, "--help"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "--database-url" in out

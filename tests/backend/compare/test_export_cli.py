"""`playground export RUN_ID [--format]` against the backend over HTTP: the file (or stdout) is
the route's download byte for byte; an unknown run fails with the backend's message."""

from __future__ import annotations

import asyncio
import sys

from tests.backend.compare.runs import BOS, seed, timeline
from tests.support.servers import REPO_ROOT


async def cli(*args: str) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "playground.cli", "export", *args, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err.decode()


async def test_export_command(client, db, backend_url, tmp_path):
    await seed(db, "cli:run", timeline([BOS, 101, 102, 103, 104], 3, seed=4), 3)
    route = await client.get("/playground/activations/cli:run/export", params={"format": "csv"})
    code, out, err = await cli(
        "cli:run", "--format", "csv", "--url", backend_url, "-o", str(tmp_path)
    )
    assert code == 0, err
    assert (tmp_path / "activations-cli_run.csv").read_bytes() == route.content
    assert list(tmp_path.iterdir()) == [tmp_path / "activations-cli_run.csv"]

    code, out, err = await cli("cli:run", "--url", backend_url)
    assert code == 0, err
    assert out == (await client.get("/playground/activations/cli:run/export")).content

    code, out, err = await cli("cli-nope", "--url", backend_url, "-o", str(tmp_path / "x.json"))
    assert code == 1 and "404" in err and "cli-nope" in err
    assert not (tmp_path / "x.json").exists()

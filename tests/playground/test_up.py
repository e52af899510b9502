"""`playground up` as a user runs it: a real subprocess on an empty data folder. It builds the
tiny model and demo SAE, starts Postgres, the engine (vLLM), the SAE service and the backend,
serves the page and a run, and on SIGTERM leaves no process behind and Postgres stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from common.pgembed import embedded_postgres
from tests.support.databases import create_database
from tests.support.servers import REPO_ROOT, SERVICE_TOKEN, free_port

pytestmark = pytest.mark.vllm

READY = re.compile(r"^Ready: (http://\S+)$", re.MULTILINE)
# Below pytest's timeout (600 s), so that a slow start fails here with `up`'s log tail; `up`'s own
# --startup-timeout (STARTUP_ARGS) is below this, so that `up` says first which part is late.
START_TIMEOUT_S = 540
STARTUP_ARGS = ["--startup-timeout", "420"]
# Variables that would switch a part of the stack away from the embedded default.
SWITCHES = (
    "DATABASE_URL",
    "PLAYGROUND_ACTIVATIONS_HF_URL",
    "PLAYGROUND_SAE_URL",
    "PLAYGROUND_MODEL",
    "PLAYGROUND_SAE_DIRS",
    "PLAYGROUND_DATA_DIR",
    "PLAYGROUND_PORT",
    "PLAYGROUND_DEFAULT_SAE_ID",
    "PLAYGROUND_LOG_FORMAT",
    "PLAYGROUND_METRICS_TOKEN",
)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children in other sessions included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_ready(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = READY.search(text)
        if match:
            return match.group(1)
        if proc.poll() is not None:
            pytest.fail(f"playground up exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"playground up not ready in {START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


async def stored_runs(uri: str) -> list[str]:
    conn = await asyncpg.connect(uri)
    try:
        return [
            r["request_id"] for r in await conn.fetch("SELECT request_id FROM activation_run_index")
        ]
    finally:
        await conn.close()


@pytest.mark.own_stack  # its own engine: not beside the session's (tests/conftest.py)
def test_up_serves_the_page_and_a_run_then_stops_cleanly(tmp_path, artifacts_dir):
    data_dir = tmp_path / "data"
    log_path = artifacts_dir / "stack-up.log"
    port = free_port()
    proc = start_up(["--data-dir", str(data_dir), "--port", str(port), *STARTUP_ARGS], log_path)
    children: set[int] = set()
    try:
        page_url = wait_ready(proc, log_path)
        base = f"http://127.0.0.1:{port}"
        assert page_url == base + "/playground/activations"
        output = log_path.read_text()
        # First run: the tiny model and the demo SAE were built, with progress shown.
        assert "building the tiny Llama-3.1" in output
        assert "building the demo SAE" in output
        assert "engine: healthy" in output and "sae: healthy" in output
        # The model services answer only the backend: up gave the three one fresh token.
        for name, path in (("engine", "/generate"), ("sae", "/extract_features")):
            url = re.search(rf"{name}: healthy at (http://\S+)", output).group(1)
            refused = httpx.post(url + path, json={}, timeout=10)
            assert refused.status_code == 401, (name, refused.text)
            assert refused.json()["error"]["code"] == "unauthorized"

        page = httpx.get(base + "/", follow_redirects=True, timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Activations Playground" in page.text
        health = httpx.get(base + "/playground/activations/health", timeout=10).json()
        assert health["status"] == "ok", health
        saes = httpx.get(base + "/playground/features/saes", timeout=10).json()
        assert saes["default"]["sae_id"] == "demo_random"
        assert saes["saes"][0]["demo"] is True

        run = httpx.post(
            base + "/playground/activations/run",
            json={"prompt": "Say hello.", "max_tokens": 8, "temperature": 0.0},
            timeout=120,
        )
        assert run.status_code == 200, run.text
        body = run.json()
        assert (
            body["preview"]["sae_id"] == "demo_random"
        )  # the backend's default follows the SAE service
        assert body["preview"]["row_count"] > 0
        runs = httpx.get(base + "/playground/activations/runs", timeout=10).json()["runs"]
        assert [r["request_id"] for r in runs] == [body["request_id"]]
        # The page's model field names what the engine answered with (its served name).
        assert f'value="{body["model_id"]}"' in page.text
        # Where the metrics are, and each run's line at the terminal (docs/operations.md).
        token = (data_dir / "run" / "service-token").read_text()
        for name in ("engine", "sae", "backend"):
            url = re.search(rf"^  {name} +(http://\S+/metrics) ", output, re.MULTILINE).group(1)
            auth = {} if name == "backend" else {"authorization": f"Bearer {token}"}
            assert httpx.get(url, headers=auth, timeout=10).status_code == 200, name
        deadline = time.monotonic() + 15
        line = rf"^  \[{run.headers['x-request-id']}\] run {body['request_id']} ok engine="
        while not re.search(line, log_path.read_text(), re.MULTILINE):
            assert time.monotonic() < deadline, "no run line at up's terminal"
            time.sleep(0.5)

        children = descendants(proc.pid)
        postmaster_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        assert postmaster_pid in children or alive(postmaster_pid)
        assert len(children) >= 4  # engine, SAE service, backend, Postgres (and their helpers)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail("playground up did not stop within 90 s of SIGTERM")

    assert proc.returncode == 0, log_path.read_text()[-3000:]
    left = sorted(pid for pid in children if alive(pid))
    assert left == [], f"processes left running: {left}"
    assert not alive(postmaster_pid)
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # Postgres shut down properly
    output = log_path.read_text()
    for line in ("engine: stopped", "sae: stopped", "backend: stopped", "postgres: stopped"):
        assert line in output

    # The data survives: the next start finds the run in the same folder.
    with embedded_postgres(data_dir / "pg") as uri:
        assert asyncio.run(stored_runs(uri)) == [body["request_id"]]


def start_up(args: list[str], log_path: Path, env_extra: dict[str, str] | None = None):
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update({"PYTHONUNBUFFERED": "1", **(env_extra or {})})
    with log_path.open("wb") as log:
        return subprocess.Popen(
            # --tiny: the readable demo's own end-to-end run is tests/e2e/test_demo_readable.py.
            [sys.executable, "-m", "playground.cli", "up", "--tiny", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_up_switches_to_external_database_and_remote_services(
    tmp_path, artifacts_dir, pg_uri, engine_url, sae_url
):
    """DATABASE_URL and remote engine/SAE URLs: only the backend is started (and migrated for)."""
    database_url = create_database(pg_uri, prefix="up")
    log_path = artifacts_dir / "stack-up-remote.log"
    port = free_port()
    proc = start_up(
        ["--data-dir", str(tmp_path / "data"), "--port", str(port), "--sae-url", sae_url],
        log_path,
        {
            "DATABASE_URL": database_url,
            "PLAYGROUND_ACTIVATIONS_HF_URL": engine_url,
            # The remote services' token: the backend that `up` starts sends it.
            "PLAYGROUND_SERVICE_TOKEN": SERVICE_TOKEN,
        },
    )
    try:
        wait_ready(proc, log_path)
        output = log_path.read_text()
        assert "Postgres: using DATABASE_URL" in output
        assert "building" not in output and "starting engine" not in output
        assert "starting sae" not in output
        children = descendants(proc.pid)
        base = f"http://127.0.0.1:{port}"
        health = httpx.get(base + "/playground/activations/health", timeout=10).json()
        assert health["status"] == "ok", health
        run = httpx.post(
            base + "/playground/activations/run",
            json={"prompt": "Hi.", "max_tokens": 4},
            timeout=120,
        )
        assert run.status_code == 200, run.text
        assert run.json()["preview"]["sae_id"] == "demo_random"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert [pid for pid in children if alive(pid)] == []
    assert not (tmp_path / "data" / "pg").exists()  # no embedded server was started


def test_up_refuses_a_busy_port_before_starting_anything(tmp_path, artifacts_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        log_path = artifacts_dir / "stack-up-busy.log"
        proc = start_up(["--data-dir", str(tmp_path / "data"), "--port", str(port)], log_path)
        assert proc.wait(timeout=60) == 1
    assert f"port {port} on 127.0.0.1 is busy" in log_path.read_text()
    assert not (tmp_path / "data" / "pg").exists()

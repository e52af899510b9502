"""`playground up` supervising its parts, as a user meets it: Ctrl-C stops everything cleanly; a
child that fails at start is reported with its log; a child killed after Ready, or the embedded
Postgres killed under load, stops the whole stack loudly (non-zero, the part's log), and no run
the backend answered 200 for is lost (Postgres's crash recovery on the next start).

Each test runs its own `up --tiny` (the session's engine and SAE service are not used), in an
invocation of its own (marker own_stack: `pytest -m own_stack tests/playground`), on a data folder
seeded with models built once per module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from common.defaults import DEMO_SAE_SUBDIR, TINY_MODEL_SUBDIR
from common.pgembed import embedded_postgres, postmaster_pid
from tests.playground.test_up import (
    STARTUP_ARGS,
    alive,
    descendants,
    start_up,
    stored_runs,
    wait_ready,
)
from tests.support.servers import free_port

# own_stack: each starts its own engine, so they run in their own pytest invocation
# (tests/conftest.py), never beside the session's engine.
pytestmark = [pytest.mark.vllm, pytest.mark.own_stack]
STOP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A data folder with the tiny model and the demo SAE, built once (copied per test)."""
    from playground.local_models import ensure_demo_sae, ensure_tiny_model

    data = tmp_path_factory.mktemp("up-built")
    ensure_demo_sae(ensure_tiny_model(data), data)
    return data


def seeded(built: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for sub in (TINY_MODEL_SUBDIR, DEMO_SAE_SUBDIR):
        shutil.copytree(built / sub, data / sub)
    return data


def stopped(proc: subprocess.Popen, children: set[int], postmaster: int | None = None) -> int:
    """``up``'s exit code once it has stopped on its own. If it has not, the test fails after
    killing it, its children and (its reaper being among them) the Postgres it started."""
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGTERM)  # a clean shutdown
        pytest.fail(f"playground up still running {STOP_TIMEOUT_S} s after the event")


def child_pid(children: set[int], subcommand: bytes) -> int:
    """The PID of `playground <subcommand>` among ``children`` (its process group leader)."""
    for pid in children:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"playground.cli" in argv and argv[argv.index(b"playground.cli") + 1] == subcommand:
            return pid
    raise AssertionError(f"no `playground {subcommand}` among {sorted(children)}")


def assert_all_stopped(children: set[int], postmaster: int) -> None:
    left = sorted(pid for pid in children if alive(pid))
    assert left == [], f"processes left running: {left}"
    assert not alive(postmaster)


def test_ctrl_c_stops_everything_cleanly(built, tmp_path, artifacts_dir):
    data = seeded(built, tmp_path)
    log_path = artifacts_dir / "stack-up-sigint.log"
    proc = start_up(["--data-dir", str(data), "--port", str(free_port()), *STARTUP_ARGS], log_path)
    children: set[int] = set()
    try:
        wait_ready(proc, log_path)
        children = descendants(proc.pid)
        postmaster = postmaster_pid(data / "pg")
        assert postmaster is not None and alive(postmaster)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends
        code = stopped(proc, children, postmaster)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert code == 0, output[-3000:]
    assert_all_stopped(children, postmaster)
    assert not (data / "pg" / "postmaster.pid").exists()  # a clean shutdown, not a crash
    for line in ("engine: stopped", "sae: stopped", "backend: stopped", "postgres: stopped"):
        assert line in output
    assert "error:" not in output


def test_a_child_failing_at_start_is_reported_with_its_log(built, tmp_path, artifacts_dir):
    """The SAE service given a folder that is no SAE exits at start: `up` says which part, shows
    its log's tail, stops what it started (Postgres) and exits 1. The engine is remote (a dead
    URL), so no vLLM engine starts for this."""
    data = seeded(built, tmp_path)
    not_an_sae = tmp_path / "not-an-sae"
    not_an_sae.mkdir()
    (not_an_sae / "cfg.json").write_text("{ not json")
    log_path = artifacts_dir / "stack-up-failing-start.log"
    proc = start_up(
        ["--data-dir", str(data), "--port", str(free_port()), *STARTUP_ARGS,
         "--engine-url", f"http://127.0.0.1:{free_port()}", "--sae-dir", str(not_an_sae)],
        log_path,
    )  # fmt: skip
    code = stopped(proc, set())
    output = log_path.read_text()
    assert code == 1, output[-3000:]
    assert "error: sae exited with" in output and "during start-up" in output
    sae_log = (data / "logs" / "sae.log").read_text().strip().splitlines()
    assert sae_log and sae_log[-1] in output  # the child's own last words
    assert "Ready:" not in output
    assert "sae: stopped" in output and "postgres: stopped" in output
    assert not (data / "pg" / "postmaster.pid").exists()


def test_a_child_killed_after_ready_stops_the_rest(built, tmp_path, artifacts_dir):
    data = seeded(built, tmp_path)
    log_path = artifacts_dir / "stack-up-child-killed.log"
    proc = start_up(["--data-dir", str(data), "--port", str(free_port()), *STARTUP_ARGS], log_path)
    children: set[int] = set()
    try:
        wait_ready(proc, log_path)
        children = descendants(proc.pid)
        postmaster = postmaster_pid(data / "pg")
        assert postmaster is not None
        sae = child_pid(children, b"sae")
        os.killpg(sae, signal.SIGKILL)
        code = stopped(proc, children, postmaster)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert code == 1, output[-3000:]
    assert f"error: sae exited with -{int(signal.SIGKILL)}" in output
    sae_log = (data / "logs" / "sae.log").read_text().strip().splitlines()
    assert sae_log[-1] in output  # its log's tail, printed
    for line in ("engine: stopped", "backend: stopped", "postgres: stopped"):
        assert line in output
    assert_all_stopped(children, postmaster)


def test_postgres_killed_under_load_stops_the_stack_and_loses_no_committed_run(
    built, tmp_path, artifacts_dir
):
    data = seeded(built, tmp_path)
    port = free_port()
    log_path = artifacts_dir / "stack-up-postgres-killed.log"
    proc = start_up(["--data-dir", str(data), "--port", str(port), *STARTUP_ARGS], log_path)
    children: set[int] = set()
    committed: list[str] = []
    enough = threading.Event()
    done = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            while not done.is_set():
                request_id = uuid.uuid4().hex
                try:
                    response = http.post(
                        "/playground/activations/run",
                        json={"prompt": "Count.", "max_tokens": 4, "request_id": request_id},
                    )
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    committed.append(request_id)
                    if len(committed) >= 3:
                        enough.set()

    workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    try:
        wait_ready(proc, log_path)
        children = descendants(proc.pid)
        postmaster = postmaster_pid(data / "pg")
        assert postmaster is not None
        for worker in workers:
            worker.start()
        assert enough.wait(timeout=300), "no runs committed under load"
        os.kill(postmaster, signal.SIGKILL)  # runs still in flight
        code = stopped(proc, children)
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=150)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert code == 1, output[-3000:]
    assert f"error: postgres (pid {postmaster}) is gone" in output
    assert "playground up` again restarts it" in output
    for line in ("engine: stopped", "sae: stopped", "backend: stopped"):
        assert line in output
    assert "postgres: was not running" in output
    assert_all_stopped(children, postmaster)

    # The next start recovers the data folder: every run answered 200 is there.
    with embedded_postgres(data / "pg") as uri:
        stored = set(asyncio.run(stored_runs(uri)))
    assert len(committed) >= 3
    assert set(committed) <= stored, sorted(set(committed) - stored)

"""The engine exits promptly on SIGTERM, every process of its group with it (`up`'s Ctrl-C
waited out its 20 s grace on a vLLM worker left behind, then killed it); and the reaper that
sees to it kills what stays behind, sparing nothing but the resource tracker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from common.services import Service, free_port, pid_alive, wait_healthy
from engine.generation.leftovers import descendants, reap

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def test_reap_kills_a_child_that_ignores_sigterm():
    child = subprocess.Popen(
        [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.pid in descendants()
        child.send_signal(signal.SIGTERM)  # ignored
        assert reap([child.pid], grace_s=0.3) == [child.pid]
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()


def test_reap_leaves_a_child_that_exits_in_time():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert reap([child.pid], grace_s=20) == []
    child.wait(timeout=10)
    assert not pid_alive(child.pid)


@pytest.mark.vllm
def test_engine_group_exits_promptly_on_sigterm(tiny_model_dir, artifacts_dir):
    log = artifacts_dir / "engine-sigterm.log"
    log.unlink(missing_ok=True)
    engine = Service("engine", ["engine", "--model", str(tiny_model_dir)], free_port(), log)
    engine.start()
    try:
        wait_healthy([engine], timeout=600)
        started = time.monotonic()
        # As `up` stops it: SIGTERM to the group, wait for every member; SIGKILL after 15 s.
        killed = engine.stop(grace_s=15)
        took = time.monotonic() - started
    finally:
        engine.stop(grace_s=1)
    assert not killed, f"the engine's group outlived SIGTERM by 15 s; log {log}"
    assert "Application shutdown complete" in log.read_text()
    print(f"engine group gone {took:.1f} s after SIGTERM")

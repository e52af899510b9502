"""The engine's own processes, ended with it: vLLM's engine core and its workers.

On SIGTERM uvicorn shuts the app down and ``AsyncLLM.shutdown()`` asks the engine core to stop,
but a worker can stay behind (reparented to init once the core exits, spinning on "terminating
worker queues"), and whoever waits for the engine's whole process group (``playground up``)
then waits out its grace period and kills it. So the processes under this one are noted before
the shutdown, given a moment to exit, and killed if they have not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from common.services import pid_alive, proc_stats

logger = logging.getLogger(__name__)

# Python's multiprocessing resource tracker ignores SIGTERM by design and exits by itself once
# the last process holding its pipe is gone; killing it would leak what it tracks.
_SPARED = ("multiprocessing.resource_tracker",)


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below ``pid`` (this one by default), read from /proc (Linux; empty
    elsewhere)."""
    root = os.getpid() if pid is None else pid
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for child, fields in proc_stats(proc):
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _spared(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # gone
    return any(name in cmdline for name in _SPARED)


def reap(pids: list[int], grace_s: float = 3.0) -> list[int]:
    """Wait up to ``grace_s`` for ``pids`` to exit, then SIGKILL those left (but the resource
    tracker). Returns the pids it killed."""
    deadline = time.monotonic() + grace_s
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if pid_alive(pid)]
    killed = []
    for pid in alive:
        if _spared(pid):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    if killed:
        logger.warning(
            "engine shutdown: killed %d process(es) left behind: %s", len(killed), killed
        )
    return killed

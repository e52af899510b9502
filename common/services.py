"""Child services: a `playground` subcommand in its own process group, health-checked over
HTTP and stopped as a group. `playground up`, the test session and the benchmarks all start
the engine, the SAE service and the backend this way."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.deathsig import parent_death_signal

# Below Linux's default ephemeral range (32768-60999): a port the kernel hands out for "any
# free port" (vLLM's own ZMQ and torch.distributed sockets, every outgoing connection) can be
# taken between our pick and the child's bind, seconds later; one from here cannot, that way.
SERVICE_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port to give a child service: free now, and outside the kernel's ephemeral range."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(SERVICE_PORTS.start, SERVICE_PORTS.stop)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # everything tried was taken: any free port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceExited(RuntimeError):
    """The child exited while we waited for it to become healthy."""


class ServiceTimeout(TimeoutError):
    """The child did not become healthy in time."""


@dataclass
class Service:
    """One child process: ``python -m playground.cli <args> --host H --port P``, serving
    GET /health, with its output appended to ``log_path``."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0  # time.monotonic() of the last start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, host: str = "127.0.0.1") -> None:
        self.started_at = time.monotonic()
        cmd = [sys.executable, "-m", "playground.cli", *self.args]
        cmd += ["--host", host, "--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Own session: a terminal's Ctrl-C reaches only us, and we stop each group in order.
            # SIGTERM when we die, however we die (SIGKILL included): no orphaned service.
            self.proc = subprocess.Popen(
                cmd,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_healthy(self, timeout: float) -> None:
        """Block until GET /health answers 200 (see :func:`wait_healthy`)."""
        wait_healthy([self], timeout)

    def last_log_line(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:160] if lines else ""

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> bool:
        """SIGTERM the whole group; wait for every member (vLLM's workers outlive the server
        process by a moment), then SIGKILL whatever is left after ``grace_s``. Returns whether
        it had to be killed."""
        if self.proc is None:
            return False
        pgid = self.proc.pid
        if self.proc.poll() is None or _group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not _group_members(pgid):
                return False
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()
        return True


def wait_healthy(
    services: Sequence[Service],
    timeout: float,
    *,
    on_healthy: Callable[[Service, float], None] | None = None,
    on_progress: Callable[[Service, float], None] | None = None,
    progress_every_s: float = 5.0,
    poll_s: float = 0.25,
) -> None:
    """Poll until every service answers GET /health with 200. Raises :class:`ServiceExited`
    (with its log tail) when one exits first, :class:`ServiceTimeout` after ``timeout`` s.
    ``on_healthy``/``on_progress`` get the service and the seconds waited so far."""
    pending = list(services)
    started = last_report = time.monotonic()
    while pending:
        for svc in list(pending):
            code = svc.exited()
            if code is not None:
                raise ServiceExited(
                    f"{svc.name} exited with {code} during start-up; log {svc.log_path}:\n"
                    f"{svc.log_tail()}"
                )
            if svc.healthy():
                pending.remove(svc)
                if on_healthy:
                    on_healthy(svc, time.monotonic() - started)
        now = time.monotonic()
        if pending and now - started > timeout:
            names = ", ".join(svc.name for svc in pending)
            raise ServiceTimeout(f"not healthy after {timeout:.0f} s: {names}")
        if pending and on_progress and now - last_report >= progress_every_s:
            last_report = now
            for svc in pending:
                on_progress(svc, now - started)
        if pending:
            time.sleep(poll_s)


@contextlib.contextmanager
def running(
    service: Service, *, timeout: float, host: str = "127.0.0.1", grace_s: float = 30.0
) -> Iterator[Service]:
    """Start ``service``, wait until it is healthy, yield it, stop its whole group on exit."""
    service.start(host=host)
    try:
        wait_healthy([service], timeout)
        yield service
    finally:
        service.stop(grace_s)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not), whoever owns it."""
    if Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc (Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    return [pid for pid, fields in proc_stats(proc) if fields[0] != "Z" and int(fields[2]) == pgid]


def proc_stats(proc: Path = Path("/proc")) -> Iterator[tuple[int, list[str]]]:
    """Each process's pid and the fields of its /proc stat after the parenthesised name
    (state, ppid, pgrp, ...); a process gone meanwhile is left out (Linux)."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(entry.name), fields

"""`playground up`: the whole stack on one machine, with nothing to configure.

Embedded Postgres (data kept in DATA_DIR/pg) and its migrations, the readable demo model
(SmolLM2-135M-Instruct) and its trained SAE, or with --tiny the tiny Llama-3.1 and a random SAE
(built on first use), then `playground engine`, `playground sae` and `playground backend` as
child processes, each in its own process group with its log in DATA_DIR/logs. Any part can be
switched to the real thing: a model path or HF id, SAE folders, an external DATABASE_URL, or
remote engine/SAE URLs (that service is then not started). Ctrl-C or SIGTERM stops every child,
then Postgres.

Supervision: once Ready, a child that exits, or the embedded Postgres server that dies (its
postmaster PID is watched), stops the whole stack with a non-zero exit and the part's log tail.
Postgres is not restarted in place: every run would fail while it is down, and a restart under
the running backend would hide the fault; starting `playground up` again runs Postgres's crash
recovery on the same data folder, which keeps every committed run. An external DATABASE_URL is
not watched (its own operator restarts it; the backend answers 503 meanwhile).
"""

from __future__ import annotations

import argparse
import signal
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from common.defaults import PAGE_PATH
from common.services import Service, ServiceExited, ServiceTimeout, pid_alive
from common.services import wait_healthy as common_wait_healthy
from playground.console import say
from playground.observability import RunLines, metrics_lines, write_token
from playground.phases import ENGINE_MARKS, LogPhases, format_phases
from playground.stack_services import (
    StartupFailed,
    backend_service,
    model_services,
)
from playground.up_args import add_arguments as add_arguments  # the `up` subcommand's parser
from playground.up_args import service_token

PROGRESS_EVERY_S = 5.0
STOP_GRACE_S = 20.0


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StartupFailed(
                f"port {port} on {host} is busy ({exc.strerror}); pass --port"
            ) from exc


def wait_healthy(
    services: list[Service], timeout: float, watch: LogPhases | None = None
) -> dict[str, float]:
    """Wait for ``services`` with progress lines; a child that exits or hangs fails start-up.
    ``watch`` (the engine's log phases) is polled meanwhile. Returns each service's seconds to
    healthy, counted from its start."""
    healthy: dict[str, float] = {}
    printed: dict[str, float] = {}

    def on_healthy(svc: Service, _waited: float) -> None:
        healthy[svc.name] = time.monotonic() - svc.started_at
        say(f"  {svc.name}: healthy at {svc.url} ({healthy[svc.name]:.0f} s)")

    def on_progress(svc: Service, waited: float) -> None:
        if watch is not None:
            watch.poll()
        if waited - printed.get(svc.name, 0.0) >= PROGRESS_EVERY_S:
            printed[svc.name] = waited
            say(f"  {svc.name}: starting ({waited:.0f} s) {svc.last_log_line()}")

    try:
        common_wait_healthy(
            services,
            timeout,
            on_healthy=on_healthy,
            on_progress=on_progress,
            progress_every_s=0.5,
        )
    except (ServiceExited, ServiceTimeout) as exc:
        raise StartupFailed(str(exc)) from exc
    if watch is not None:
        watch.poll()
    return healthy


def _ignore_signals_while_stopping() -> None:
    # A second Ctrl-C must not abandon the children half-stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass(frozen=True)
class EmbeddedServer:
    """The embedded Postgres that `up` started (or joined): watched like a child."""

    pid: int
    pgdata: Path

    def gone(self) -> str | None:
        """None while the server runs; else what to tell the user, with its log's tail."""
        if pid_alive(self.pid):
            return None
        from common.pgembed import server_log

        try:
            tail = server_log(self.pgdata).read_text(errors="replace")[-2000:]
        except OSError:
            tail = ""
        return (
            f"postgres (pid {self.pid}) is gone: every run would fail until it is back. "
            "Stopping everything; `playground up` again restarts it on the same data, and its "
            f"crash recovery keeps every committed run. Server log {server_log(self.pgdata)}:\n"
            f"{tail}"
        )


def _database(
    stack: ExitStack, args: argparse.Namespace, data_dir: Path
) -> tuple[str, EmbeddedServer | None]:
    """The Postgres URL, migrated: DATABASE_URL, or the embedded server (stopped by ``stack``,
    and returned to be watched)."""
    from backend.db.migrate import upgrade
    from common.pgembed import embedded_postgres, postmaster_pid

    url = args.database_url
    server = None
    if url:
        say("==> Postgres: using DATABASE_URL")
    else:
        pgdata = data_dir / "pg"
        say(f"==> Postgres: embedded server, data in {pgdata}")
        stack.callback(_say_postgres_stopped, pgdata)  # runs after the server's cleanup
        url = stack.enter_context(embedded_postgres(pgdata))
        pid = postmaster_pid(pgdata)
        if pid is None:
            raise StartupFailed(f"the embedded Postgres in {pgdata} has no postmaster.pid")
        server = EmbeddedServer(pid, pgdata)
    say("==> migrations")
    try:
        upgrade(url)
    except Exception as exc:
        raise StartupFailed(f"migrations failed: {type(exc).__name__}: {exc}") from exc
    return url, server


def _say_postgres_stopped(pgdata: Path) -> None:
    from common.pgembed import postmaster_pid

    pid = postmaster_pid(pgdata)
    if pid is not None and not pid_alive(pid):
        say("  postgres: was not running (postmaster.pid left for its crash recovery)")
    else:
        say("  postgres: stopped")


def up(args: argparse.Namespace) -> int:
    data_dir = args.data_dir.expanduser().resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    args.service_token = service_token(args)
    children: list[Service] = []
    with ExitStack() as stack:
        try:
            started = time.monotonic()
            _check_port_free(args.host, args.port)
            # The models first (the engine is the slowest to start), Postgres while they load.
            watches: list[LogPhases] = []

            def start(svc: Service) -> None:
                if svc.name == "engine":
                    watches.append(LogPhases(svc.log_path, ENGINE_MARKS))
                say(f"==> starting {svc.name} (log {svc.log_path})")
                svc.start()
                children.append(svc)

            models = model_services(args, data_dir, start)
            watch = watches[0] if watches else None
            database_started = time.monotonic()
            database_url, postgres = _database(stack, args, data_dir)
            database_s = time.monotonic() - database_started
            # The backend needs the SAE service (its default SAE), not the engine: it starts
            # while the engine still loads.
            first = [svc for svc in models.to_start if svc.name == "sae"]
            healthy: dict[str, float] = {}
            if models.to_start:
                say("==> loading models (progress below)")
            if first:
                healthy |= wait_healthy(first, args.startup_timeout, watch)
            backend = backend_service(args, data_dir, database_url, models)
            say(f"==> starting backend (log {backend.log_path})")
            backend.start(host=args.host)
            children.append(backend)
            rest = [svc for svc in models.to_start if svc not in first]
            healthy |= wait_healthy([*rest, backend], args.startup_timeout, watch)

            host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
            urls = {
                "engine": models.engine_url,
                "sae": models.sae_url,
                "backend": f"http://{host}:{args.port}",
            }
            token_path = None
            if models.to_start and not (args.engine_url or args.sae_url):  # a fresh token
                token_path = write_token(data_dir / "run" / "service-token", args.service_token)
            say("")
            for line in metrics_lines(
                urls, token_path, bool(getattr(args, "metrics_token_set", False))
            ):
                say(line)
            say("")
            say_phases(time.monotonic() - started, database_s, healthy, watch)
            say(f"Ready: http://{host}:{args.port}{PAGE_PATH}")
            say("Ctrl-C stops everything; each run shows below.")
            return _watch(children, postgres, RunLines(backend.log_path))
        except StartupFailed as exc:
            say(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            return 0  # Ctrl-C is how one stops the stack: a clean stop is a success
        finally:
            _ignore_signals_while_stopping()
            if children:
                say("==> stopping")
            for svc in reversed(children):
                if svc.stop(STOP_GRACE_S):
                    say(f"  {svc.name}: still running after {STOP_GRACE_S:.0f} s, killed")
                else:
                    say(f"  {svc.name}: stopped")
    return 0


def say_phases(
    total_s: float, database_s: float, healthy: dict[str, float], watch: LogPhases | None
) -> None:
    """Where the start-up went (docs/page.md, "Start-up")."""
    parts = [f"Postgres + migrations {database_s:.1f} s (beside the models)"]
    parts += [f"{name} {seconds:.1f} s" for name, seconds in healthy.items()]
    say(f"Start-up: {total_s:.1f} s to Ready; " + ", ".join(parts))
    if watch is not None and watch.seen:
        say(f"  engine phases: {format_phases(watch.phases())}")


def _watch(
    children: list[Service],
    postgres: EmbeddedServer | None = None,
    runs: RunLines | None = None,
) -> int:
    """Sleep until a signal, showing each run's line; a child that dies, or the embedded
    Postgres, takes the stack down (its log says why)."""
    while True:
        for line in runs.poll() if runs is not None else ():
            say(f"  {line}")
        for svc in children:
            code = svc.exited()
            if code is not None:
                say(f"error: {svc.name} exited with {code}; log {svc.log_path}:\n{svc.log_tail()}")
                return 1
        if postgres is not None and (why := postgres.gone()) is not None:
            say(f"error: {why}")
            return 1
        time.sleep(1.0)


def main(args: argparse.Namespace) -> int:
    from common.pgembed import exit_cleanly_on_sigterm

    exit_cleanly_on_sigterm()
    # A shell starting us in the background leaves SIGINT ignored; Ctrl-C/`kill -INT` must stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return up(args)
    except SystemExit:
        # SIGTERM (turned into SystemExit): everything above has stopped cleanly.
        return 0

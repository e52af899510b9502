"""Alembic environment: hand-written SQL revisions (no ORM metadata), run over asyncpg.

`backend.db.migrate` passes an open connection in ``config.attributes["connection"]``;
run by hand, the URL comes from DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context

from backend.db.migrate import run_sync_on

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: the revisions are plain SQL already")

connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(run_sync_on(os.environ["DATABASE_URL"], _run))

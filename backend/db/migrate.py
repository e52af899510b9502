"""Run the alembic migrations under migrations/ programmatically, over asyncpg."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
HEAD = "0023_admission_function"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def run_sync_on(database_url: str, fn: Callable[[object], None]) -> None:
    """Run ``fn(sync_connection)`` on one SQLAlchemy connection over asyncpg, then commit.

    The embedded server's URI is a Unix-socket URI that only asyncpg parses; SQLAlchemy gets a
    connection factory instead of a URL. migrations/env.py uses this too when run by hand.
    """
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: asyncpg.connect(database_url),
        poolclass=NullPool,
    )
    try:
        async with engine.connect() as conn:
            await conn.run_sync(fn)
            await conn.commit()
    finally:
        await engine.dispose()


async def _run_async(database_url: str, action: Callable[[Config], None]) -> None:
    def run(sync_connection) -> None:
        config = _config()
        config.attributes["connection"] = sync_connection
        action(config)

    await run_sync_on(database_url, run)


def _run(database_url: str, action: Callable[[Config], None]) -> None:
    coro_factory = lambda: _run_async(database_url, action)  # noqa: E731
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro_factory())
        return
    # Called from inside an event loop (app start-up, async tests): run on a fresh loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(coro_factory())).result()


def down_revision_of(revision: str) -> str | None:
    """The revision ``revision`` applies on top of (what a downgrade by one step leaves)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config()).get_revision(revision)
    down = script.down_revision if script else None
    return down if isinstance(down, str) or down is None else down[0]


def upgrade(database_url: str, revision: str = "head") -> None:
    _run(database_url, lambda config: command.upgrade(config, revision))


def downgrade(database_url: str, revision: str, *, drop_run_index: bool = False) -> None:
    """``drop_run_index``: let 0013's downgrade drop ``activation_run_index`` (which it may have
    adopted, not created); without it a downgrade past 0013 fails and changes nothing."""

    def action(config: Config) -> None:
        config.attributes["drop_run_index"] = drop_run_index
        command.downgrade(config, revision)

    _run(database_url, action)


async def current_revision(database_url: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        return await conn.fetchval("SELECT version_num FROM alembic_version") if exists else None
    finally:
        await conn.close()

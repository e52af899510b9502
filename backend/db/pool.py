"""The asyncpg pool, and the mapping of "Postgres is not there" to one 503 error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from backend.settings import Settings
from common.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

# Errors that mean the database (not the query) is unavailable; anything else is a bug.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    # A pooled connection whose server went away mid-operation (seen under load while
    # Postgres restarts): "cannot switch to state ...; another operation is in progress".
    asyncpg.exceptions._base.InternalClientError,
)


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own (an open transaction rolled
    back, listeners dropped), so a release costs no round trip. asyncpg's default sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release, a second
    round trip for each use of a connection, one of them on every run's way to its first token.
    Safe because no pooled connection keeps session state: settings are changed only for a
    transaction (``set_config(..., true)``), advisory locks are transaction locks, nothing
    LISTENs, cursors live in transactions; whatever needs more (prune) opens its own
    connection. tests/backend/db/test_pool.py holds these."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    if not settings.database_url:
        raise RuntimeError("database_url must be resolved before the app starts")
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.playground_db_pool_min,
        max_size=settings.playground_db_pool_max,
        timeout=settings.playground_connect_timeout_s,
        reset=keep_session,
        command_timeout=settings.playground_db_timeout_s,
        server_settings=(
            {} if settings.playground_durable_writes else {"synchronous_commit": "off"}
        ),
    )


@asynccontextmanager
async def postgres_errors() -> AsyncIterator[None]:
    """Turn connection-level failures into 503 naming postgres."""
    try:
        yield
    except _UNAVAILABLE as exc:
        # The exception's text (hosts, paths, server messages) goes to the log, not the client.
        logger.warning("postgres unavailable: %s: %s", type(exc).__name__, exc)
        raise ServiceUnavailable(
            f"postgres unavailable ({type(exc).__name__})", upstream="postgres"
        ) from exc


@asynccontextmanager
async def connection(
    pool: asyncpg.Pool, acquire_timeout: float
) -> AsyncIterator[asyncpg.Connection]:
    async with postgres_errors(), pool.acquire(timeout=acquire_timeout) as conn:
        try:
            yield conn
        except _UNAVAILABLE:
            # Never hand a connection that failed this way to the next request.
            conn.terminate()
            raise

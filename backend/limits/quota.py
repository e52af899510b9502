"""The storage guard in front of new runs: a per-client daily byte quota and a ceiling on the
database's size, so that no client (or all of them) can fill the disk.

- Quota: every stored run adds its bytes to its client's row for the UTC day
  (backend/db/usage.py, in the run's write transaction: ``record``). A client at or over
  ``PLAYGROUND_CLIENT_DAILY_BYTES`` gets 429 ``quota_exceeded`` (``Retry-After``: until
  midnight UTC) for new runs, so a client stores at most its quota plus one run a day. It is
  checked in the request's admission (the same round trip as the rate limits).
- Size: with the database over ``PLAYGROUND_MAX_DATABASE_BYTES``, new runs get 507
  ``storage_full``; reads keep working (they are never asked). The size is asked at most every
  ``PLAYGROUND_DATABASE_SIZE_CHECK_S`` per process.

Neither can be checked without Postgres: then 503, as for every GPU route.
"""

from __future__ import annotations

import time

import asyncpg

from backend.db import usage
from backend.db.pool import connection
from backend.settings import Settings
from common.errors import ApiError, RateLimited

# The routes that store runs.
STORING_ROUTES = frozenset({("POST", "/playground/activations/run")})


class StorageFull(ApiError):
    status_code = 507
    code = "storage_full"


def quota_exceeded(used: int, quota: int, left_s: float) -> RateLimited:
    """The refusal of a client at its daily quota (checked in its admission, one round trip
    with the rate limits: backend/limits/limiter.py)."""
    return RateLimited(
        f"this client stored {used} bytes today, its quota is {quota}: new runs "
        "are refused until midnight UTC",
        retry_after_s=left_s,
        code="quota_exceeded",
    )


class StorageGuard:
    """The database's size ceiling, and the daily quota the admission checks."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.quota = settings.playground_client_daily_bytes
        self.max_database = settings.playground_max_database_bytes
        self.size_every_s = settings.playground_database_size_check_s
        self._timeout = settings.playground_db_timeout_s
        self._size: tuple[float, int] | None = None  # (monotonic time asked, bytes)

    async def check_size(self) -> None:
        """507 ``storage_full`` with the database over its ceiling (Postgres asked at most
        every ``size_every_s``: most calls cost nothing)."""
        now = time.monotonic()
        if self._size is None or now - self._size[0] >= self.size_every_s:
            async with connection(self.pool, self._timeout) as conn:
                self._size = (now, await usage.database_bytes(conn))
                await usage.prune_usage(conn)  # yesterday's rows are enough for any Retry-After
        if self._size[1] > self.max_database:
            raise StorageFull(
                "the database is full: new runs are refused until old ones are pruned "
                "(reads keep working)",
                headers={"Retry-After": "3600"},
            )


async def record(conn: asyncpg.Connection, client_key: str | None, nbytes: int) -> None:
    """Count a stored run's bytes against its client (inside the run's write transaction)."""
    if client_key is not None and nbytes > 0:
        await usage.add_bytes(conn, client_key, nbytes)

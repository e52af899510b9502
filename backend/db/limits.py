"""Rate-limit windows and work leases in SQL, shared by every backend process on one Postgres.

Rate: a counter per (client, route class, fixed window). Concurrency: a lease per piece of work
in flight; a lease counts only until ``expires_at``, which its process keeps pushing forward
while the work runs, so the slots of a process that died free themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

# Appended to each admission statement: its transaction's commit does not wait for the WAL
# flush (``set_config(..., true)`` = SET LOCAL; no extra round trip). A crash can lose a
# window hit or a lease of the last instants, which only ever lets a request more through;
# leases expire anyway. It keeps an fsync off every request's way in (docs/backend.md).
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


@dataclass(frozen=True, slots=True)
class SlotCounts:
    """Live leases of one class: this client's, everyone's, and how many clients hold any."""

    mine: int
    everyone: int
    clients: int


async def hit_window(
    conn: asyncpg.Connection, client_key: str, route_class: str, window: timedelta
) -> tuple[int, float]:
    """Count one request in the current window; returns (hits so far, seconds until the
    window ends)."""
    row = await conn.fetchrow(
        f"""
WITH w AS (
  SELECT to_timestamp(floor(extract(epoch FROM now()) / $3) * $3) AS start
)
INSERT INTO rate_limit_windows (client_key, route_class, window_start, hits)
SELECT $1, $2, w.start, 1 FROM w
ON CONFLICT (client_key, route_class, window_start)
DO UPDATE SET hits = rate_limit_windows.hits + 1
RETURNING hits, extract(epoch FROM window_start + make_interval(secs => $3) - now())::float8
  AS remaining_s, {ASYNC_COMMIT}
""",
        client_key,
        route_class,
        window.total_seconds(),
    )
    return row["hits"], row["remaining_s"]


async def prune_windows(conn: asyncpg.Connection, older_than: timedelta) -> None:
    await conn.execute(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - $1::interval", older_than
    )


async def acquire_lease(
    conn: asyncpg.Connection,
    *,
    client_key: str,
    route_class: str,
    decide: Callable[[SlotCounts], str | None],
    ttl: timedelta,
) -> tuple[uuid.UUID | None, str | None]:
    """Take a slot unless ``decide`` refuses it from the class's live counts (this client's,
    everyone's, and how many clients hold any). Returns (lease id, None) or (None, the
    refusal). Serialised per class by a transaction-scoped advisory lock, so two processes
    cannot both take the last slot."""
    async with conn.transaction():
        await conn.execute(
            f"SELECT pg_advisory_xact_lock(hashtext('work_leases:' || $1)), {ASYNC_COMMIT}",
            route_class,
        )
        await conn.execute("DELETE FROM work_leases WHERE expires_at < now()")
        counts = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE client_key = $1) AS mine, count(*) AS everyone, "
            "count(DISTINCT client_key) AS clients "
            "FROM work_leases WHERE route_class = $2",
            client_key,
            route_class,
        )
        refused = decide(SlotCounts(counts["mine"], counts["everyone"], counts["clients"]))
        if refused is not None:
            return None, refused
        lease_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO work_leases (lease_id, client_key, route_class, expires_at) "
            "VALUES ($1, $2, $3, now() + $4::interval)",
            lease_id,
            client_key,
            route_class,
            ttl,
        )
        return lease_id, None


async def renew_leases(
    conn: asyncpg.Connection, lease_ids: list[uuid.UUID], ttl: timedelta
) -> None:
    await conn.execute(
        "UPDATE work_leases SET expires_at = now() + $2::interval WHERE lease_id = ANY($1::uuid[])",
        lease_ids,
        ttl,
    )


async def release_lease(conn: asyncpg.Connection, lease_id: uuid.UUID) -> None:
    await conn.execute(
        f"WITH d AS (DELETE FROM work_leases WHERE lease_id = $1) SELECT {ASYNC_COMMIT}", lease_id
    )


async def live_leases(conn: asyncpg.Connection, route_class: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM work_leases WHERE route_class = $1 AND expires_at >= now()",
        route_class,
    )

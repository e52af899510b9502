"""Rate-limit windows and work leases in SQL, shared by every backend process on one Postgres.

Rate: a counter per (client, route class, fixed window). Concurrency: a lease per piece of work
in flight; a lease counts only until ``expires_at``, which its process keeps pushing forward
while the work runs, so the slots of a process that died free themselves. A request's
admission (quota, window, lease) is one call of the ``playground_admit`` function (migration
0023), whose rules are documented there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

# Appended to the release: its commit does not wait for the WAL flush (``set_config(..., true)``
# = SET LOCAL; no extra round trip). A crash can lose a lease's release of the last instants;
# leases expire anyway. The admission function does the same for its own commit.
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


@dataclass(frozen=True, slots=True)
class AdmissionAsk:
    """One request's admission (migration 0023's ``playground_admit``): its rate window, the
    slot it would take (``lease_id``) under its class's limits, and for a storing route the
    client's daily byte quota (None: not checked)."""

    client_key: str
    route_class: str
    window: timedelta
    per_window: int
    lease_id: uuid.UUID
    ttl: timedelta
    per_client: int
    ceiling: int | None
    reserve: int
    quota_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """``refused``: None (the lease is taken), ``quota``, ``window``, ``client``, ``global``
    or ``share``. ``retry_s``: until the window (``window``) or the UTC day (``quota``) ends.
    ``used_bytes``: what the client stored today (when the quota was asked)."""

    refused: str | None
    hits: int | None
    retry_s: float | None
    used_bytes: int | None


async def admit(conn: asyncpg.Connection, ask: AdmissionAsk) -> Admission:
    """Count the request and take its slot, or say why not: one statement, one round trip
    (the rules and why they hold across processes: migrations/versions/0023)."""
    row = await conn.fetchrow(
        "SELECT refused, hits, retry_s, used_bytes "
        "FROM playground_admit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ask.client_key,
        ask.route_class,
        ask.window.total_seconds(),
        ask.per_window,
        ask.lease_id,
        ask.ttl.total_seconds(),
        ask.per_client,
        ask.ceiling,
        ask.reserve,
        ask.quota_bytes,
    )
    return Admission(row["refused"], row["hits"], row["retry_s"], row["used_bytes"])


async def prune_windows(conn: asyncpg.Connection, older_than: timedelta) -> None:
    await conn.execute(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - $1::interval", older_than
    )


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

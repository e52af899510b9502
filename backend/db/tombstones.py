"""Deleted runs stay deleted (SQL): the tombstone a DELETE leaves, the claim it keeps for the
deleter, and the check a run's write makes that its claim is still live.

Lock order as in owners.py: ``activation_run_owners`` first. A write takes its owner row
``FOR SHARE`` before writing, so a DELETE either waits for the write to commit (and removes
the run after it) or has already removed the owner row (and the write is dropped).
"""

from __future__ import annotations

import asyncpg


async def bury(conn: asyncpg.Connection, request_id: str, owner_hash: bytes) -> None:
    """Leave the deleter's tombstone (inside the delete's transaction)."""
    await conn.execute(
        "INSERT INTO activation_run_tombstones (request_id, owner_hash) VALUES ($1, $2) "
        "ON CONFLICT (request_id) DO UPDATE SET owner_hash = EXCLUDED.owner_hash, "
        "deleted_at = now()",
        request_id,
        owner_hash,
    )


async def tombstone_owner(conn: asyncpg.Connection, request_id: str) -> bytes | None:
    return await conn.fetchval(
        "SELECT owner_hash FROM activation_run_tombstones WHERE request_id = $1", request_id
    )


async def revive(conn: asyncpg.Connection, request_id: str, owner_hash: bytes) -> bool:
    """The deleter runs the id again: its tombstone becomes its owner row again; returns
    whether this call did it (False: the tombstone is not this owner's, or is gone)."""
    return bool(
        await conn.fetchval(
            """
WITH gone AS (
  DELETE FROM activation_run_tombstones WHERE request_id = $1 AND owner_hash = $2
  RETURNING request_id
)
INSERT INTO activation_run_owners (request_id, owner_hash)
SELECT request_id, $2 FROM gone
ON CONFLICT (request_id) DO NOTHING
RETURNING true
""",
            request_id,
            owner_hash,
        )
    )


async def claim_is_live(conn: asyncpg.Connection, request_id: str) -> bool:
    """Inside the write's transaction: whether the run's claim still stands (its owner row is
    there), locking the row against a concurrent DELETE until the write commits."""
    return bool(
        await conn.fetchval(
            "SELECT true FROM activation_run_owners WHERE request_id = $1 FOR SHARE", request_id
        )
    )

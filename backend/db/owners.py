"""Run ownership in SQL: the claim a run takes on its request_id, and the owner's delete.

Lock order, shared by every writer: ``activation_run_owners``, then ``activation_run_index``,
then ``activation_run_previews`` (prune takes the index rows first too; see queries.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend.db import tombstones


@dataclass(frozen=True, slots=True)
class Claim:
    """``created``: this call took the id. Otherwise ``owner_hash`` is the existing owner's
    (None: a row without an owner, i.e. an adopted legacy run, which nobody may write)."""

    created: bool
    owner_hash: bytes | None


# The id is taken only when no run (legacy rows included) has it yet and no deleted run's
# tombstone keeps it (backend/db/tombstones.py). Its commit does not wait for the WAL flush
# (SET LOCAL by set_config, in the same statement: no extra round trip): it is on every run's
# way to its first token, and the run's own write later is durable and flushes it with it. A
# crash in between loses the claim of a run that was never stored (its token then names
# nothing; the id can be claimed again), never a stored run's owner.
_CLAIM = """
WITH ins AS (
  INSERT INTO activation_run_owners (request_id, owner_hash)
  SELECT $1, $2
  WHERE NOT EXISTS (SELECT 1 FROM activation_run_index WHERE request_id = $1)
    AND NOT EXISTS (SELECT 1 FROM activation_run_tombstones WHERE request_id = $1)
  ON CONFLICT (request_id) DO NOTHING
  RETURNING true AS created
)
SELECT coalesce((SELECT created FROM ins), false) AS created,
       (SELECT owner_hash FROM activation_run_owners WHERE request_id = $1) AS owner_hash,
       set_config('synchronous_commit', 'off', true) AS async_commit
"""


async def claim_run(conn: asyncpg.Connection, request_id: str, owner_hash: bytes) -> Claim:
    row = await conn.fetchrow(_CLAIM, request_id, owner_hash)
    return Claim(created=row["created"], owner_hash=None if row["created"] else row["owner_hash"])


async def run_owner(conn: asyncpg.Connection, request_id: str) -> tuple[bool, bytes | None]:
    """(exists, owner_hash) of a run: exists if it has an owner row or an index row."""
    row = await conn.fetchrow(
        "SELECT (SELECT owner_hash FROM activation_run_owners WHERE request_id = $1) AS owner,"
        " EXISTS (SELECT 1 FROM activation_run_owners WHERE request_id = $1)"
        " OR EXISTS (SELECT 1 FROM activation_run_index WHERE request_id = $1) AS present",
        request_id,
    )
    return row["present"], row["owner"]


async def delete_run(conn: asyncpg.Connection, request_id: str, owner_hash: bytes) -> bool:
    """Remove the run (owner row, index row, its preview by cascade) if ``owner_hash`` owns it,
    leaving its tombstone; returns whether it did. One transaction, owners row locked first."""
    async with conn.transaction():
        owned = await conn.fetchval(
            "DELETE FROM activation_run_owners WHERE request_id = $1 AND owner_hash = $2 "
            "RETURNING true",
            request_id,
            owner_hash,
        )
        if not owned:
            return False
        await tombstones.bury(conn, request_id, owner_hash)
        await conn.execute("DELETE FROM activation_run_index WHERE request_id = $1", request_id)
    return True

"""Run ownership: a run claims its request_id before any GPU work; the creating call gets an
owner token (only its SHA-256 is stored); writing to or deleting an existing id needs the
token (``X-Run-Owner``), else 409 ``run_owned`` and nothing changes. Runs without an owner
(adopted legacy rows) are read-only. A deleted run leaves a tombstone: its id stays the
deleter's, and a run still generating when it was deleted is dropped at its write."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from backend.db import owners, tombstones
from backend.db.pool import connection
from common.errors import NotFound, RunOwned

OWNER_HEADER = "X-Run-Owner"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _matches(presented: str | None, stored: bytes | None) -> bool:
    if presented is None or stored is None:
        return False
    return secrets.compare_digest(token_hash(presented), stored)


class RunOwnership:
    def __init__(self, pool: asyncpg.Pool, db_timeout_s: float) -> None:
        self.pool = pool
        self._db_timeout = db_timeout_s

    async def claim(self, request_id: str, presented: str | None) -> str | None:
        """Take ``request_id`` for this run. Returns a fresh owner token when the id was free
        (the caller answers it once), None when ``presented`` is the owner's; raises RunOwned
        otherwise (before anything is written or any upstream called)."""
        token = secrets.token_urlsafe(32)
        async with connection(self.pool, self._db_timeout) as conn:
            claim = await owners.claim_run(conn, request_id, token_hash(token))
            if claim.created:
                return token
            if _matches(presented, claim.owner_hash):
                return None
            if claim.owner_hash is None:  # a legacy row, or a run its owner deleted
                buried = await tombstones.tombstone_owner(conn, request_id)
                if buried is not None:
                    if _matches(presented, buried) and await tombstones.revive(
                        conn, request_id, buried
                    ):
                        return None
                    raise RunOwned(
                        f"run {request_id!r} was deleted by its owner; only they may reuse the id"
                    )
        raise _owned(request_id, claim.owner_hash)

    async def delete(self, request_id: str, presented: str | None) -> None:
        """The owner removes their run: 404 if there is none, 409 unless ``presented`` owns it."""
        async with connection(self.pool, self._db_timeout) as conn:
            present, owner_hash = await owners.run_owner(conn, request_id)
            if not present:
                raise NotFound(f"no run {request_id!r}")
            if (
                owner_hash is None
                or not _matches(presented, owner_hash)
                or not await owners.delete_run(conn, request_id, owner_hash)
            ):
                raise _owned(request_id, owner_hash)


def _owned(request_id: str, owner_hash: bytes | None) -> RunOwned:
    if owner_hash is None:
        return RunOwned(f"run {request_id!r} predates ownership: it is read-only")
    return RunOwned(f"run {request_id!r} belongs to another owner (send its {OWNER_HEADER})")

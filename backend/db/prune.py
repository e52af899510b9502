"""Prune old previews in short batches: index rows stay, marked pruned.

A batch is one short transaction that locks up to ``batch_size`` index rows whose previews
are past the cutoff (the run write's lock order: index row, then preview; rows a writer holds
are skipped, never waited for) and marks them pruned (reads answer 410 from then on), then
the previews go in statements of ``delete_chunk`` rows, each its own transaction. So no
transaction holds a lock for longer than one small chunk of TOAST deletion: a run re-written
while the prune is at it waits at most that long. A re-run that lands between the mark and
the delete has a new created_at and keeps its preview (each delete re-checks the cutoff).

Stopped at any point (Ctrl-C, SIGTERM, ``max_batches``, ``max_seconds``), the committed work
stays; the next prune picks up what is still older than its cutoff, marked or not.

Prune commits are synchronous on purpose: each chunk's commit flushes the WAL that chunk wrote
(mostly the deleted TOAST pages' full-page images). With asynchronous commits that WAL piled up
unflushed and a concurrent run write's commit had to flush all of it first: its worst case
was 130-260 ms; flushed chunk by chunk it stays near one chunk's flush (bench/prune.py,
docs/scale.md). ``async_commit=True`` and ``pause_s`` are kept for that benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

DEFAULT_BATCH = 100
MAX_BATCH = 10_000
DELETE_CHUNK = 10


@dataclass(frozen=True, slots=True)
class PruneProgress:
    cutoff: datetime
    batches: int
    pruned: int
    elapsed_s: float

    @property
    def per_s(self) -> float:
        return self.pruned / self.elapsed_s if self.elapsed_s > 0 else 0.0


# Oldest first, from where the last batch stopped (``$2``), so that a batch does not walk
# the dead index entries the earlier batches left behind.
_LOCK_BATCH = """
SELECT i.request_id, p.created_at
FROM activation_run_previews p
JOIN activation_run_index i ON i.request_id = p.request_id
WHERE p.created_at < $1 AND p.created_at >= $2
ORDER BY p.created_at
LIMIT $3
FOR UPDATE OF i SKIP LOCKED
"""

# A new statement, so a new snapshot: a re-run that committed since the lock above has a new
# created_at and is left alone. While we hold the index rows no writer can touch the previews.
_MARK_BATCH = """
UPDATE activation_run_index i SET pruned_at = now(), has_preview = false
FROM activation_run_previews p
WHERE i.request_id = ANY($1::text[]) AND p.request_id = i.request_id AND p.created_at < $2
RETURNING i.request_id
"""

_DELETE_CHUNK = """
DELETE FROM activation_run_previews WHERE request_id = ANY($1::text[]) AND created_at < $2
"""


async def prune_cutoff(conn: asyncpg.Connection, older_than: timedelta) -> datetime:
    """The server's now() minus ``older_than``: one cutoff for the whole prune."""
    return await conn.fetchval("SELECT now() - $1::interval", older_than)


async def prune_batch(
    conn: asyncpg.Connection,
    cutoff: datetime,
    after: datetime,
    batch_size: int,
    delete_chunk: int = DELETE_CHUNK,
    pause_s: float = 0.0,
) -> tuple[int, datetime | None]:
    """Mark up to ``batch_size`` runs with previews created in [after, cutoff) pruned, then
    delete their previews chunk by chunk.

    Returns (previews deleted, the newest created_at the batch looked at; None when nothing
    is left)."""
    async with conn.transaction():
        locked = await conn.fetch(_LOCK_BATCH, cutoff, after, batch_size)
        if not locked:
            return 0, None
        marked = [
            r["request_id"]
            for r in await conn.fetch(_MARK_BATCH, [r["request_id"] for r in locked], cutoff)
        ]
    deleted = 0
    for k in range(0, len(marked), delete_chunk):
        status = await conn.execute(_DELETE_CHUNK, marked[k : k + delete_chunk], cutoff)
        deleted += int(status.split()[-1])
        if pause_s > 0:
            await asyncio.sleep(pause_s)
    return deleted, max(r["created_at"] for r in locked)


async def prune_previews(
    conn: asyncpg.Connection,
    older_than: timedelta,
    *,
    batch_size: int = DEFAULT_BATCH,
    delete_chunk: int = DELETE_CHUNK,
    max_batches: int | None = None,
    max_seconds: float | None = None,
    on_batch: Callable[[PruneProgress], None] | None = None,
    pause_s: float = 0.0,
    async_commit: bool = False,
) -> PruneProgress:
    """Delete previews older than ``older_than`` batch by batch; returns the totals. Stops
    after ``max_batches`` batches or the batch that ends past ``max_seconds``, if given."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be within 1..{MAX_BATCH}")
    if delete_chunk < 1:
        raise ValueError("delete_chunk must be at least 1")
    delete_chunk = min(delete_chunk, batch_size)
    cutoff = await prune_cutoff(conn, older_than)
    start = time.perf_counter()
    after = datetime.min.replace(tzinfo=cutoff.tzinfo)
    progress = PruneProgress(cutoff, 0, 0, 0.0)
    if async_commit:
        await conn.execute("SET synchronous_commit = off")
    try:
        while (max_batches is None or progress.batches < max_batches) and (
            max_seconds is None or progress.elapsed_s < max_seconds
        ):
            pruned, newest = await prune_batch(
                conn, cutoff, after, batch_size, delete_chunk, pause_s
            )
            if newest is None:
                break
            after = newest
            elapsed = time.perf_counter() - start
            progress = PruneProgress(
                cutoff, progress.batches + 1, progress.pruned + pruned, elapsed
            )
            if on_batch is not None:
                on_batch(progress)
    finally:
        await conn.execute("RESET synchronous_commit")
    return PruneProgress(cutoff, progress.batches, progress.pruned, time.perf_counter() - start)

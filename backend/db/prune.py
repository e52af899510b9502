"""Prune old previews in short batches: index rows stay, marked pruned.

Each batch is its own transaction, so a prune can be stopped at any point (Ctrl-C, SIGTERM,
``max_batches``) and the committed batches stay done; the next prune starts where it stopped,
because what is left is still older than its cutoff. Locks follow the run write's order (the
index row, then its preview), so a prune and a re-run of the same id cannot deadlock; rows a
writer holds are skipped (SKIP LOCKED), never waited for; the counters (0017's triggers) are
touched only by the last statement of a batch, just before its commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

DEFAULT_BATCH = 100
MAX_BATCH = 10_000


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
# created_at and is left alone.
_DELETE_BATCH = """
WITH gone AS (
  DELETE FROM activation_run_previews
  WHERE request_id = ANY($1::text[]) AND created_at < $2
  RETURNING request_id
), marked AS (
  UPDATE activation_run_index i SET pruned_at = now(), has_preview = false
  FROM gone WHERE i.request_id = gone.request_id
  RETURNING 1
)
SELECT count(*) FROM marked
"""


async def prune_cutoff(conn: asyncpg.Connection, older_than: timedelta) -> datetime:
    """The server's now() minus ``older_than``: one cutoff for the whole prune."""
    return await conn.fetchval("SELECT now() - $1::interval", older_than)


async def prune_batch(
    conn: asyncpg.Connection, cutoff: datetime, after: datetime, batch_size: int
) -> tuple[int, datetime | None]:
    """One short transaction: up to ``batch_size`` previews created in [after, cutoff) go.

    Returns (pruned, the newest created_at the batch looked at; None when nothing is left)."""
    async with conn.transaction():
        locked = await conn.fetch(_LOCK_BATCH, cutoff, after, batch_size)
        if not locked:
            return 0, None
        ids = [r["request_id"] for r in locked]
        pruned = await conn.fetchval(_DELETE_BATCH, ids, cutoff)
    return pruned, max(r["created_at"] for r in locked)


async def prune_previews(
    conn: asyncpg.Connection,
    older_than: timedelta,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    on_batch: Callable[[PruneProgress], None] | None = None,
) -> PruneProgress:
    """Delete previews older than ``older_than`` batch by batch; returns the totals."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be within 1..{MAX_BATCH}")
    cutoff = await prune_cutoff(conn, older_than)
    start = time.perf_counter()
    after = datetime.min.replace(tzinfo=cutoff.tzinfo)
    progress = PruneProgress(cutoff, 0, 0, 0.0)
    while max_batches is None or progress.batches < max_batches:
        pruned, newest = await prune_batch(conn, cutoff, after, batch_size)
        if newest is None:
            break
        after = newest
        progress = PruneProgress(
            cutoff, progress.batches + 1, progress.pruned + pruned, time.perf_counter() - start
        )
        if on_batch is not None:
            on_batch(progress)
    return PruneProgress(cutoff, progress.batches, progress.pruned, time.perf_counter() - start)

"""Steering pairs in SQL (migration 0018): a steered run, its default run and the steering
spec, written with both runs in one transaction; the claims a refused steered request
releases; the pair of a run as its reads show it."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend.db import queries
from backend.db.queries import FeaturesRow, IndexRow, PreviewRow


@dataclass(frozen=True, slots=True)
class RunRowSet:
    """One run's rows, as ``queries.save_run`` takes them."""

    index: IndexRow
    preview: PreviewRow | None
    features: FeaturesRow | None


_LINK = """
INSERT INTO activation_run_pairs (request_id, role, pair_request_id, steering)
VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (request_id) DO UPDATE SET role = EXCLUDED.role,
  pair_request_id = EXCLUDED.pair_request_id, steering = EXCLUDED.steering
"""


_UNLINK_OTHERS = (
    "UPDATE activation_run_pairs SET pair_request_id = NULL "
    "WHERE pair_request_id = ANY($1::text[]) AND NOT request_id = ANY($1::text[])"
)


async def save_pair(
    conn: asyncpg.Connection,
    steered: RunRowSet,
    default: RunRowSet | None,
    steering_json: str,
) -> None:
    """Both runs and their links, in one transaction (locks: index rows first, as every writer
    takes them, then the pair rows)."""
    steered_id = steered.index.request_id
    default_id = default.index.request_id if default is not None else None
    ids = [steered_id] if default_id is None else [steered_id, default_id]
    async with conn.transaction():
        await queries.save_run(conn, steered.index, steered.preview, steered.features)
        if default is not None:
            await queries.save_run(conn, default.index, default.preview, default.features)
        await conn.execute(_UNLINK_OTHERS, ids)  # an earlier pair of either id lets go of it
        await conn.execute(_LINK, steered_id, "steered", default_id, steering_json)
        if default_id is not None:
            await conn.execute(_LINK, default_id, "default", steered_id, None)


async def save_steered_failure(
    conn: asyncpg.Connection, index: IndexRow, steering_json: str
) -> None:
    """A steered run that failed upstream: its failure row (never over a run that succeeded:
    ``queries.save_run`` guards that) and its steering spec, without a default."""
    async with conn.transaction():
        await queries.save_run(conn, index, None, None)
        if await conn.fetchval(
            "SELECT status = 'failed' FROM activation_run_index WHERE request_id = $1",
            index.request_id,
        ):
            await conn.execute(_LINK, index.request_id, "steered", None, steering_json)


async def forget_pair(conn: asyncpg.Connection, request_id: str) -> None:
    """A plain re-run of ``request_id``: it is no longer in a pair (nor its partner with it)."""
    async with conn.transaction():
        await conn.execute(_UNLINK_OTHERS, [request_id])
        await conn.execute("DELETE FROM activation_run_pairs WHERE request_id = $1", request_id)


async def release_claims(conn: asyncpg.Connection, request_ids: list[str]) -> None:
    """Drop the owner claims of these ids where no run was stored under them (a request
    refused after its claim leaves nothing behind)."""
    await conn.execute(
        "DELETE FROM activation_run_owners o WHERE o.request_id = ANY($1::text[]) "
        "AND NOT EXISTS (SELECT 1 FROM activation_run_index i WHERE i.request_id = o.request_id)",
        request_ids,
    )


async def get_pair(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """The run's role, the other run of its pair, and the pair's steering spec (JSON text:
    the steered run's, also for its default)."""
    return await conn.fetchrow(
        """
SELECT p.role, p.pair_request_id,
       coalesce(p.steering, q.steering)::text AS steering
FROM activation_run_pairs p
LEFT JOIN activation_run_pairs q ON q.request_id = p.pair_request_id
WHERE p.request_id = $1
""",
        request_id,
    )


async def default_of(conn: asyncpg.Connection, request_id: str) -> str | None:
    """The default run paired with the steered run ``request_id`` (a re-run reuses it)."""
    return await conn.fetchval(
        "SELECT pair_request_id FROM activation_run_pairs "
        "WHERE request_id = $1 AND role = 'steered'",
        request_id,
    )

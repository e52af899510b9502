"""Stored bytes per client and UTC day, and the database's size (SQL for the storage guard,
backend/limits/quota.py)."""

from __future__ import annotations

import asyncpg


async def add_bytes(conn: asyncpg.Connection, client_key: str, nbytes: int) -> None:
    await conn.execute(
        "INSERT INTO client_byte_usage (client_key, day, bytes) "
        "VALUES ($1, (now() AT TIME ZONE 'UTC')::date, $2) "
        "ON CONFLICT (client_key, day) DO UPDATE SET bytes = client_byte_usage.bytes + $2",
        client_key,
        nbytes,
    )


async def prune_usage(conn: asyncpg.Connection, keep_days: int = 2) -> None:
    await conn.execute(
        "DELETE FROM client_byte_usage WHERE day < (now() AT TIME ZONE 'UTC')::date - $1::int",
        keep_days,
    )


async def database_bytes(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT pg_database_size(current_database())")

"""bench.load's attacker mode: unread maximum-size streams from 8 addresses beside the honest
clients, on the real tiny stack.

Two phases of equal length on one stack: honest clients alone, then honest clients with the
attackers. Honest clients start a run at most every ``HONEST_PACE_S`` (within their rate
limit, so their own limit does not count as the attack's effect). Each attacker (its own
address, through the trusted ``x-client`` header) asks for a streamed run of the largest size
the budget admits every ``ASK_EVERY_S`` and never reads any (raw sockets with a 4 KiB receive
buffer, all held open until the end, so no run is cancelled by a departure). Reported: the
honest clients' run success rate in each phase and their ratio (target >= 0.90), other 5xx
(target 0), and each attacker's stored bytes today against the daily quota.
"""

from __future__ import annotations

import asyncio
import socket
import time

import asyncpg
import orjson

ATTACKERS = 8
ASK_EVERY_S = 4.0
HONEST_PACE_S = 3.2  # 20 runs a minute is the per-client rate limit
# The budget's largest run at sae_top_k 128 (bench.load sets the quota low enough to bind).
MAXIMUM = {"prompt": "m" * 20, "max_tokens": 760, "sae_top_k": 128, "temperature": 1.0}
QUOTA_BYTES = 4 << 20  # below one maximum run: the first stored run crosses it
ATTACK_ENV = {"PLAYGROUND_CLIENT_DAILY_BYTES": str(QUOTA_BYTES)}


def attacker_key(index: int) -> str:
    return f"10.66.0.{index}"


async def unread_stream(base: str, index: int, n: int) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    body = orjson.dumps({**MAXIMUM, "request_id": f"attack-{index}-{n}-{time.time_ns()}"})
    head = (
        f"POST /playground/activations/run HTTP/1.1\r\nHost: {host}\r\n"
        f"Accept: text/event-stream\r\nx-client: {attacker_key(index)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    await loop.sock_sendall(sock, head.encode() + body)
    return sock


async def attacker_loop(
    base: str, index: int, deadline: float, opened: list[int], held: list[socket.socket]
) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            held.append(await unread_stream(base, index, n))
            opened[0] += 1
        except OSError:
            pass
        await asyncio.sleep(ASK_EVERY_S)


async def drained(database_url: str, timeout_s: float) -> None:
    """Wait (bounded) until no GPU work is in flight: runs still generating get stored."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        live = "SELECT count(*) FROM work_leases WHERE route_class = 'gpu' AND expires_at > now()"
        while time.monotonic() < deadline:
            if not await conn.fetchval(live):
                return
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def attacker_bytes(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT client_key, sum(bytes) AS bytes FROM client_byte_usage "
            "WHERE client_key LIKE '10.66.0.%' GROUP BY client_key"
        )
    finally:
        await conn.close()
    return {r["client_key"]: int(r["bytes"]) for r in rows}


def honest_rate(statuses: dict[tuple[int, str], int]) -> float:
    """Runs answered 200 over run attempts (the honest clients' success rate)."""
    total = sum(statuses.values())
    return statuses.get((200, ""), 0) / total if total else 0.0

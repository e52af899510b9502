"""Unread streams hold no GPU slot (issue 20, finding 1): attackers on several source
addresses open streamed runs and never read them; the runs finish and are stored, their slots
come back when the GPU work is over, and a fresh client is admitted. Real backend process
(`playground backend`), real Postgres, stub upstreams as real HTTP servers; the attackers are
raw sockets with a tiny receive buffer, bound to their own loopback addresses."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import contextmanager

import asyncpg
import httpx
import orjson
import pytest

from tests.support.databases import create_database
from tests.support.servers import serve_subcommand

RUN = "/playground/activations/run"
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 6)]
# Big enough that its frames cannot all sit in socket buffers (several MB of features).
BIG = {"max_tokens": 1500, "sae_top_k": 128}


@contextmanager
def unread_backend(pg_uri, stub_urls, artifacts_dir, name: str, per_client: int, ceiling: int):
    """A `playground backend` process whose GPU slots come back only by the hand-back."""
    db = create_database(pg_uri, prefix=name, migrate=True)
    env = {
        "DATABASE_URL": db,
        "PLAYGROUND_ACTIVATIONS_HF_URL": stub_urls["engine"],
        "PLAYGROUND_SAE_URL": stub_urls["sae"],
        "PLAYGROUND_GPU_IN_FLIGHT_PER_CLIENT": str(per_client),
        "PLAYGROUND_GPU_IN_FLIGHT_GLOBAL": str(ceiling),
        "PLAYGROUND_GPU_RESERVE_NEW": "0",  # only the slot hand-back may admit the newcomer
        "PLAYGROUND_CLIENT_SEND_TIMEOUT_S": "2",
        "PLAYGROUND_STREAM_QUEUE_FRAMES": "8",
        "PLAYGROUND_RATE_GPU_PER_WINDOW": "100",
        "PLAYGROUND_SAE_TIMEOUT_S": "120",  # the stub's dense chunks on a loaded machine
        # Runs bigger than today's cap admits: several MB of frames, beyond any socket buffer.
        "PLAYGROUND_MAX_TIMELINE_BYTES": str(64 << 20),
    }
    with serve_subcommand(
        ["backend", "--no-migrate"], log_path=artifacts_dir / f"{name}.log", env=env
    ) as url:
        yield url, db


@pytest.fixture(scope="module")
def backend(pg_uri, stub_urls, artifacts_dir):
    with unread_backend(pg_uri, stub_urls, artifacts_dir, "unread", 1, len(ATTACKERS)) as started:
        yield started


def unread_stream(url: str, source: str, request_id: str, **extra) -> socket.socket:
    """A streamed run asked for from ``source`` and never read (4 KiB receive buffer)."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"prompt": "x" * 200, "request_id": request_id, **BIG, **extra})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    head = (
        f"POST {RUN} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


async def stored_runs(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT request_id, status, error_code, error_message FROM activation_run_index "
        "WHERE request_id LIKE 'unread-%' ORDER BY request_id"
    )
    return [(r["request_id"], r["status"], r["error_code"], r["error_message"]) for r in rows]


async def test_unread_streams_hold_no_slot(backend, stub_states):
    url, db = backend
    stub_states["engine"].output_len = BIG["max_tokens"]
    stub_states["sae"].dense = True
    sockets = [unread_stream(url, source, f"unread-{i}") for i, source in enumerate(ATTACKERS)]
    try:
        conn = await asyncpg.connect(db)
        try:
            deadline = time.monotonic() + 30
            while len(stub_states["engine"].calls) < len(ATTACKERS):
                assert time.monotonic() < deadline, "the attackers' runs never reached the engine"
                await asyncio.sleep(0.05)
            # A fresh client: refused while the attackers' GPU work runs, admitted once it is
            # over, though none of the attackers has read a byte.
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                deadline = time.monotonic() + 60
                while True:
                    fresh = await http.post(RUN, json={"prompt": "fresh"})
                    if fresh.status_code == 200:
                        break
                    assert fresh.status_code == 503, fresh.text
                    assert time.monotonic() < deadline, "unread streams still hold the slots"
                    await asyncio.sleep(0.5)
            # Each attacker's run finishes and is stored as usual.
            want = [(f"unread-{i}", "ok", None, None) for i in range(len(ATTACKERS))]
            deadline = time.monotonic() + 60
            while (stored := await stored_runs(conn)) != want:
                assert time.monotonic() < deadline, stored
                await asyncio.sleep(0.25)
        finally:
            await conn.close()
        # And the attackers were dropped: their connections end without a full answer.
        for sock in sockets:
            sock.settimeout(30)
            with pytest.raises((ConnectionError, TimeoutError, OSError)):
                while sock.recv(1 << 16):
                    pass
                raise ConnectionError("closed")
    finally:
        for sock in sockets:
            sock.close()


# A steered pair (its default beside it) takes two GPU slots: its own and one more
# (backend/limits/extra.py). Both come back when the pair's GPU work is over: with one attacker
# and a ceiling of two slots, a fresh client's pair (two slots) is admitted only then.
PAIR = {"steer": [{"feature_id": 7, "strength": 40.0}], "compare": True}
PAIR_ATTACKERS = ATTACKERS[:1]


@pytest.fixture(scope="module")
def pair_backend(pg_uri, stub_urls, artifacts_dir):
    ceiling = 2 * len(PAIR_ATTACKERS)
    with unread_backend(pg_uri, stub_urls, artifacts_dir, "unread_pairs", 2, ceiling) as started:
        yield started


async def test_unread_steered_pairs_hold_no_slot(pair_backend, stub_states):
    url, db = pair_backend
    stub_states["engine"].output_len = BIG["max_tokens"]
    stub_states["sae"].dense = True
    sockets = [
        unread_stream(url, source, f"unread-pair-{i}", **PAIR)
        for i, source in enumerate(PAIR_ATTACKERS)
    ]
    try:
        conn = await asyncpg.connect(db)
        try:
            generations = 2 * len(PAIR_ATTACKERS)  # each pair: steered and default
            deadline = time.monotonic() + 30
            while sum("prompt" in c for c in stub_states["engine"].calls) < generations:
                assert time.monotonic() < deadline, "the pairs never reached the engine"
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                deadline = time.monotonic() + 60
                while True:
                    fresh = await http.post(RUN, json={"prompt": "fresh", **PAIR})
                    if fresh.status_code == 200:
                        break
                    assert fresh.status_code == 503, fresh.text
                    assert time.monotonic() < deadline, "unread pairs still hold the slots"
                    await asyncio.sleep(0.5)
            # Each pair is stored: the steered run and its default, both ok.
            deadline = time.monotonic() + 60
            while True:
                rows = await conn.fetch(
                    "SELECT p.role, i.status FROM activation_run_pairs p "
                    "JOIN activation_run_index i USING (request_id)"
                )
                stored = sorted((r["role"], r["status"]) for r in rows)
                # The attackers' pairs and the fresh client's.
                want = [("default", "ok"), ("steered", "ok")] * (len(sockets) + 1)
                if stored == sorted(want):
                    break
                assert time.monotonic() < deadline, stored
                await asyncio.sleep(0.25)
        finally:
            await conn.close()
    finally:
        for sock in sockets:
            sock.close()

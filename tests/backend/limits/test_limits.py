"""Rate and concurrency limits shared by two real backend processes on one real Postgres
(stub upstreams as real HTTP servers): per-client slots and rates hold across processes, the
GPU ceiling holds across clients, and the slots of a killed process expire."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import httpx
import pytest

from common.services import Service, free_port
from tests.support.databases import create_database
from tests.support.servers import serve_subcommand

RUN = "/playground/activations/run"


@pytest.fixture(scope="module")
def two_backends(pg_uri, stub_urls, artifacts_dir):
    db = create_database(pg_uri, prefix="limits", migrate=True)
    env = {
        "DATABASE_URL": db,
        "PLAYGROUND_ACTIVATIONS_HF_URL": stub_urls["engine"],
        "PLAYGROUND_SAE_URL": stub_urls["sae"],
        "PLAYGROUND_ENGINE_TIMEOUT_S": "20",
        "PLAYGROUND_CLIENT_IP_HEADER": "x-client",
        "PLAYGROUND_GPU_IN_FLIGHT_PER_CLIENT": "1",
        "PLAYGROUND_GPU_IN_FLIGHT_GLOBAL": "2",
        "PLAYGROUND_RATE_GPU_PER_WINDOW": "4",
        "PLAYGROUND_RATE_WINDOW_S": "600",
        "PLAYGROUND_LEASE_TTL_S": "3",
    }
    with (
        serve_subcommand(
            ["backend", "--no-migrate"], log_path=artifacts_dir / "limits-a.log", env=env
        ) as a,
        serve_subcommand(
            ["backend", "--no-migrate"], log_path=artifacts_dir / "limits-b.log", env=env
        ) as b,
    ):
        yield a, b, env


async def post_run(url: str, client: str, **body) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await http.post(RUN, json={"prompt": "x", **body}, headers={"x-client": client})


async def wait_in_flight(stub_state, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(stub_state.calls) < count:
        assert time.monotonic() < deadline, "the slow runs never reached the engine"
        await asyncio.sleep(0.05)


def assert_limited(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"]) >= 1


async def test_slots_and_ceiling_hold_across_processes(two_backends, stub_states):
    a, b, _ = two_backends
    engine = stub_states["engine"]
    engine.mode, engine.slow_s = "slow", 2.0
    slow_1 = asyncio.ensure_future(post_run(a, "client-1"))
    await wait_in_flight(engine, 1)
    # The same client through the other process: its one slot is taken.
    assert_limited(await post_run(b, "client-1"), 429, "rate_limited")
    slow_2 = asyncio.ensure_future(post_run(b, "client-2"))
    await wait_in_flight(engine, 2)
    # A third client: the deployment's ceiling of 2 GPU requests in flight is reached.
    assert_limited(await post_run(a, "client-3"), 503, "overloaded")
    assert len(engine.calls) == 2  # neither refusal reached the engine
    first, second = await asyncio.gather(slow_1, slow_2)
    assert first.status_code == second.status_code == 200
    engine.mode = "ok"
    # Slots are free again.
    assert (await post_run(b, "client-3")).status_code == 200


async def test_rate_counted_across_processes(two_backends, stub_states):
    a, b, _ = two_backends
    statuses = [(await post_run(url, "client-rate")).status_code for url in (a, b, a, b)]
    assert statuses == [200] * 4
    assert_limited(await post_run(a, "client-rate"), 429, "rate_limited")
    assert_limited(await post_run(b, "client-rate"), 429, "rate_limited")
    # Reads have their own, looser budget.
    async with httpx.AsyncClient(base_url=a, timeout=30) as http:
        listed = await http.get("/playground/activations/runs", headers={"x-client": "client-rate"})
    assert listed.status_code == 200


async def test_slots_of_a_killed_process_expire(two_backends, stub_states, artifacts_dir):
    """A process SIGKILLed mid-run never releases its slot: the lease runs out (3 s TTL) and
    the client may run again through another process."""
    _, b, env = two_backends
    engine = stub_states["engine"]
    engine.mode, engine.slow_s = "slow", 30.0
    doomed = Service(
        "backend",
        ["backend", "--no-migrate"],
        free_port(),
        artifacts_dir / "limits-doomed.log",
        env,
    )
    doomed.start()
    try:
        doomed.wait_healthy(60)
        pending = asyncio.ensure_future(post_run(doomed.url, "client-kill"))
        await wait_in_flight(engine, 1)
        assert_limited(await post_run(b, "client-kill"), 429, "rate_limited")
        os.kill(doomed.proc.pid, signal.SIGKILL)
        await asyncio.gather(pending, return_exceptions=True)
    finally:
        doomed.stop(grace_s=5)
    engine.mode = "ok"
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        # The dead process's slot: its lease row is still there, never released (whether or
        # not its 3 s have already run out by now: the count does not depend on the clock).
        leases = await conn.fetch(
            "SELECT lease_id FROM work_leases WHERE client_key = $1", "client-kill"
        )
        assert len(leases) == 1, leases
        lease_id = leases[0]["lease_id"]
        # It runs out: the same row, still there (nobody released it), no longer live.
        expired = "SELECT expires_at < now() FROM work_leases WHERE lease_id = $1"
        deadline = time.monotonic() + 15
        while not (ran_out := await conn.fetchval(expired, lease_id)):
            assert ran_out is not None, "the dead process's lease was released, not left to expire"
            assert time.monotonic() < deadline, "the dead process's lease never expired"
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    assert (await post_run(b, "client-kill")).status_code == 200

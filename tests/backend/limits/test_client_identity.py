"""Who a client is (issue 20, findings 3 and 4), through real `playground backend` processes:
the peer address unless a trusted proxy header is configured (a spoofed X-Forwarded-For is
ignored; uvicorn's own proxy-header trust is off), Modal's web-server header read from its
first address, an IPv6 /64 one client, and the ceiling shared fairly."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest

from backend.db import limits as sql
from backend.limits.identity import ClientIdentity, address_key
from tests.support.databases import create_database
from tests.support.servers import serve_subcommand

RUN = "/playground/activations/run"


def scope(peer: str, *headers: tuple[str, str]) -> dict:
    return {"client": (peer, 1234), "headers": [(k.encode(), v.encode()) for k, v in headers]}


def test_address_keys() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff::9", ipv6_prefix=56) == "2001:db8:1::/56"
    assert address_key("::ffff:198.51.100.3") == "198.51.100.3"
    assert address_key("not an address" * 20) == ("not an address" * 20)[:100]


def test_asgi_path_keys_on_the_peer_whatever_the_headers() -> None:
    """Modal's asgi_app (the backend's deployment): the scope's client, headers ignored."""
    identity = ClientIdentity()
    spoofed = scope("198.51.100.3", ("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2"))
    assert identity.key(spoofed) == "198.51.100.3"


def test_web_server_path_keys_on_the_address_modal_puts_first() -> None:
    """Modal's web_server: the client's address in front of whatever the client sent."""
    identity = ClientIdentity(header=b"x-forwarded-for", pick="first")
    modal = scope("10.0.0.1", ("x-forwarded-for", "198.51.100.3, 6.6.6.6"))
    assert identity.key(modal) == "198.51.100.3"
    # A proxy that appends (nginx): the last address is its own view of the client.
    appending = ClientIdentity(header=b"x-forwarded-for", pick="last")
    assert appending.key(scope("10.0.0.1", ("x-forwarded-for", "6.6.6.6, 198.51.100.3"))) == (
        "198.51.100.3"
    )
    assert identity.key(scope("10.0.0.1")) == "10.0.0.1"  # no header: the peer


async def hold(db: asyncpg.Connection, client: str, n: int) -> None:
    """``n`` live gpu leases of ``client``, as earlier admissions left them."""
    for _ in range(n):
        await db.execute(
            "INSERT INTO work_leases VALUES ($1, $2, 'gpu', now() + interval '1 minute')",
            uuid.uuid4(),
            client,
        )


async def admit(db: asyncpg.Connection, client: str, **limits) -> str | None:
    ask = sql.AdmissionAsk(
        client_key=client,
        route_class="gpu",
        window=timedelta(seconds=600),
        per_window=limits.pop("per_window", 1000),
        lease_id=uuid.uuid4(),
        ttl=timedelta(seconds=30),
        per_client=limits.pop("per_client", 3),
        ceiling=limits.pop("ceiling", 4),
        reserve=limits.pop("reserve", 1),
        **limits,
    )
    admission = await sql.admit(db, ask)
    taken = await db.fetchval("SELECT count(*) FROM work_leases WHERE lease_id = $1", ask.lease_id)
    assert taken == (admission.refused is None)  # a lease exactly when admitted
    return admission.refused


async def test_fair_share_rules(db: asyncpg.Connection) -> None:
    """The admission function's slot rules (migration 0023), one case per rule, on Postgres."""
    cases = [  # (leases held: this client, others by client; expected refusal)
        (0, [1, 1, 1], None),  # a newcomer takes one of the last (reserved) slots
        (0, [2, 1, 1], "global"),
        (3, [], "client"),
        (2, [1], "share"),  # its share: 4 // 2 holders
        (1, [1], None),
        (1, [1, 1], "share"),  # one more would leave fewer free than the reserve
    ]
    for mine, others, expected in cases:
        await db.execute("DELETE FROM work_leases")
        await hold(db, "me", mine)
        for i, n in enumerate(others):
            await hold(db, f"other{i}", n)
        assert await admit(db, "me") == expected, (mine, others)
    await db.execute("DELETE FROM work_leases")
    await hold(db, "me", 1)
    for i in range(400):
        await hold(db, f"c{i}", 1)
    assert await admit(db, "me", per_client=2, ceiling=None, reserve=0) is None  # no ceiling
    await db.execute("DELETE FROM work_leases WHERE expires_at > now() - interval '1 day'")
    await db.execute(  # an expired lease counts for nothing (and is cleaned up)
        "INSERT INTO work_leases VALUES ($1, 'me', 'gpu', now() - interval '1 second')",
        uuid.uuid4(),
    )
    assert await admit(db, "me", per_client=1) is None


async def test_window_and_quota_refusals(db: asyncpg.Connection) -> None:
    """The window counts refused hits too; the quota is checked before the window (a refused
    quota costs no hit); each refusal says how long until it lifts."""
    await db.execute("DELETE FROM work_leases")
    assert await admit(db, "w", per_window=2, per_client=9) is None
    assert await admit(db, "w", per_window=2, per_client=9) is None
    assert await admit(db, "w", per_window=2, per_client=9) == "window"
    hits = await db.fetchval("SELECT hits FROM rate_limit_windows WHERE client_key = 'w'")
    assert hits == 3
    await db.execute(
        "INSERT INTO client_byte_usage VALUES ('q', (now() AT TIME ZONE 'UTC')::date, 500)"
    )
    ask = sql.AdmissionAsk(
        "q",
        "gpu",
        timedelta(seconds=600),
        5,
        uuid.uuid4(),
        timedelta(seconds=30),
        3,
        4,
        1,
        quota_bytes=500,
    )
    refused = await sql.admit(db, ask)
    assert (refused.refused, refused.used_bytes) == ("quota", 500)
    assert 0 < refused.retry_s <= 86_400
    assert await db.fetchval("SELECT count(*) FROM rate_limit_windows WHERE client_key = 'q'") == 0
    assert await admit(db, "q", quota_bytes=501) is None


def backend_env(pg_uri: str, stub_urls: dict[str, str], prefix: str, **extra: str) -> dict:
    return {
        "DATABASE_URL": create_database(pg_uri, prefix=prefix, migrate=True),
        "PLAYGROUND_ACTIVATIONS_HF_URL": stub_urls["engine"],
        "PLAYGROUND_SAE_URL": stub_urls["sae"],
        "PLAYGROUND_ENGINE_TIMEOUT_S": "20",
        "PLAYGROUND_RATE_WINDOW_S": "600",
        **extra,
    }


@pytest.fixture(scope="module")
def peer_backend(pg_uri, stub_urls, artifacts_dir):
    env = backend_env(pg_uri, stub_urls, "ident_peer", PLAYGROUND_RATE_GPU_PER_WINDOW="2")
    with serve_subcommand(
        ["backend", "--no-migrate"], log_path=artifacts_dir / "identity-peer.log", env=env
    ) as url:
        yield url


@pytest.fixture(scope="module")
def header_backend(pg_uri, stub_urls, artifacts_dir):
    env = backend_env(
        pg_uri,
        stub_urls,
        "ident_header",
        PLAYGROUND_CLIENT_IP_HEADER="x-forwarded-for",
        PLAYGROUND_CLIENT_IP_PICK="first",
        PLAYGROUND_RATE_GPU_PER_WINDOW="3",
        PLAYGROUND_GPU_IN_FLIGHT_PER_CLIENT="3",
        PLAYGROUND_GPU_IN_FLIGHT_GLOBAL="4",
        PLAYGROUND_GPU_RESERVE_NEW="1",
    )
    with serve_subcommand(
        ["backend", "--no-migrate"], log_path=artifacts_dir / "identity-header.log", env=env
    ) as url:
        yield url


async def post_run(
    url: str, forwarded_for: str | None = None, *, source: str = "127.0.0.1"
) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as http:
        return await http.post(RUN, json={"prompt": "x"}, headers=headers)


async def test_spoofed_forwarded_header_ignored(peer_backend):
    """A client rotating X-Forwarded-For is still one client (its peer address): uvicorn's
    proxy-header trust of 127.0.0.1 is off in `playground backend`, no header is configured."""
    statuses = [(await post_run(peer_backend, f"203.0.113.{i}")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    # Another source address is another client.
    assert (await post_run(peer_backend, source="127.0.0.9")).status_code == 200


async def test_an_ipv6_slash_64_shares_one_budget(header_backend):
    """Through Modal's web-server header: four addresses of one /64 share its 3 runs per
    window; the next /64 has its own."""
    statuses = [
        (await post_run(header_backend, f"2001:db8:5:6::{i}")).status_code for i in range(1, 5)
    ]
    assert statuses == [200, 200, 200, 429]
    other = await post_run(header_backend, "2001:db8:5:7::1")
    assert other.status_code == 200


async def test_one_client_never_takes_more_than_its_share(header_backend, stub_states):
    """Ceiling 4, 3 per client, 1 kept for newcomers: A holds 2; with B in, A's third is over
    its share (2 of 4) and B's second would eat the reserve; newcomer C is admitted."""
    engine = stub_states["engine"]
    engine.mode, engine.slow_s = "slow", 4.0

    async def start(client: str) -> asyncio.Future:
        before = len(engine.calls)
        pending = asyncio.ensure_future(post_run(header_backend, client))
        deadline = time.monotonic() + 20
        while len(engine.calls) == before:
            assert time.monotonic() < deadline, f"{client}'s run never reached the engine"
            await asyncio.sleep(0.05)
        return pending

    held = [await start("198.51.100.1"), await start("198.51.100.1"), await start("198.51.100.2")]
    over = await post_run(header_backend, "198.51.100.1")
    assert over.status_code == 429 and "fair share" in over.json()["error"]["message"]
    reserve = await post_run(header_backend, "198.51.100.2")
    assert reserve.status_code == 429 and "fair share" in reserve.json()["error"]["message"]
    held.append(await start("198.51.100.3"))
    assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 4

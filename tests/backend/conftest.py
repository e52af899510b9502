"""Backend test parts: a fresh migrated database per module on the session's real Postgres,
stub upstreams as real HTTP servers, and the backend app served over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from backend.app import create_app
from backend.settings import Settings
from tests.backend import stubs
from tests.support.databases import create_database, throwaway_postgres
from tests.support.servers import free_port, serve_app


@pytest.fixture(scope="session")
def stub_states():
    return {name: stubs.StubState() for name in ("engine", "sae", "llama", "qwen")}


@pytest.fixture(scope="session")
def stub_urls(stub_states):
    with (
        serve_app(stubs.engine_app(stub_states["engine"])) as engine,
        serve_app(stubs.sae_app(stub_states["sae"])) as sae,
        serve_app(stubs.openai_app(stub_states["llama"], "llama")) as llama,
        serve_app(stubs.openai_app(stub_states["qwen"], "qwen")) as qwen,
    ):
        yield {"engine": engine, "sae": sae, "llama": llama, "qwen": qwen}


@pytest.fixture(autouse=True)
def reset_stubs(stub_states):
    for state in stub_states.values():
        state.mode = "ok"
        state.slow_s = stubs.StubState.slow_s  # a test's own delay never leaks into the next
        state.stream_gap_s = 0.0
        state.output_len = None
        state.dense = False
        state.calls.clear()
        state.tokenize_calls.clear()
        state.request_ids.clear()
        state.lookups.clear()
        state.drifts.clear()
    yield
    drifts = [f"{name}: {d}" for name, state in stub_states.items() for d in state.drifts]
    for state in stub_states.values():
        state.mode = "ok"
        state.drifts.clear()
    # A stub answered off the real service's contract (tests/support/contracts.py).
    assert not drifts, "stub answers drifted from the real services' models:\n" + "\n".join(drifts)


@pytest.fixture(scope="module")
async def db_uri(pg_uri) -> str:
    """A fresh database for this module, migrated to head."""
    uri = create_database(pg_uri, migrate=True)
    return uri


def backend_settings(db: str, urls: dict[str, str], **overrides) -> Settings:
    values = {
        "database_url": db,
        "playground_activations_hf_url": urls["engine"],
        "playground_sae_url": urls["sae"],
        "playground_llama_8b_url": urls["llama"],
        "playground_qwen_14b_url": urls["qwen"] + "/v1",
        "playground_admin_key": "admin-secret",
        "playground_engine_timeout_s": 1.0,
        "playground_sae_timeout_s": 1.0,
        "playground_injection_timeout_s": 1.0,
        "playground_health_timeout_s": 1.0,
        "playground_db_timeout_s": 5.0,
        "playground_health_interval_s": 0,  # health tests flip upstreams between calls
        # The suites here run many requests from one client; tests of the limits tighten them.
        "playground_rate_gpu_per_window": 100_000,
        "playground_rate_read_per_window": 1_000_000,
        "playground_gpu_in_flight_per_client": 1000,
        "playground_gpu_in_flight_global": 1000,
        "playground_read_in_flight_per_client": 1000,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def throwaway_pg(tmp_path_factory):
    """An embedded Postgres of the test's own, for tests that stop it."""
    with throwaway_postgres(tmp_path_factory.mktemp("pg-throwaway") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def backend_url(db_uri, stub_urls):
    with serve_app(create_app(backend_settings(db_uri, stub_urls))) as url:
        yield url


@pytest.fixture
async def client(backend_url) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=backend_url, timeout=30) as http:
        yield http


@pytest.fixture
async def db(db_uri) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_uri)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"

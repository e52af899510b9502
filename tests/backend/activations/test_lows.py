"""The low findings of issue 20, one test each, on the real backend, real Postgres and stub
upstreams as real HTTP servers: reads fail closed when the limiter cannot reach Postgres (and
its exception text stays out of the answer); a blocking run is cancelled when its client
leaves; the SAE is checked before any generation; unknown SAEs are not asked about again; a
dropped stream releases its SAE cache."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backend.app import create_app
from common import sse
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

RUN = "/playground/activations/run"


@pytest.fixture(scope="module")
def patient_backend(db_uri, stub_urls):
    """Timeouts long enough for a slow stub engine; 1 s for Postgres."""
    settings = backend_settings(
        db_uri, stub_urls, playground_engine_timeout_s=20.0, playground_db_timeout_s=1.0
    )
    with serve_app(create_app(settings)) as url:
        yield url


async def test_reads_fail_closed_without_the_limiter(patient_backend, db):
    """Postgres cannot count the request (its table locked past the 1 s timeout): 503, not an
    unlimited read; the message names no exception text. Health still answers."""
    async with db.transaction():
        await db.execute("LOCK TABLE rate_limit_windows IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(base_url=patient_backend, timeout=30) as http:
            read = await http.get("/playground/activations/runs")
            health = await http.get("/playground/activations/health")
    assert read.status_code == 503, read.text
    error = read.json()["error"]
    assert (error["code"], error["upstream"]) == ("service_unavailable", "postgres")
    assert error["message"] == "postgres unavailable (TimeoutError)"
    assert health.status_code == 200 and health.json()["postgres"]["ok"] is True


async def test_a_blocking_run_is_cancelled_when_its_client_leaves(patient_backend, db, stub_states):
    engine = stub_states["engine"]
    engine.mode, engine.slow_s = "slow", 2.0
    async with httpx.AsyncClient(base_url=patient_backend, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(RUN, json={"prompt": "gone", "request_id": "left-early"})
    assert len(engine.calls) == 1
    await asyncio.sleep(engine.slow_s + 1.5)  # past the engine's answer
    stored = await db.fetchval(
        "SELECT count(*) FROM activation_run_index WHERE request_id = 'left-early'"
    )
    assert stored == 0  # cancelled with its client: nothing generated for nobody is stored


async def test_sae_checked_before_generation_and_unknown_ones_not_asked_again(
    patient_backend, stub_states
):
    async with httpx.AsyncClient(base_url=patient_backend, timeout=30) as http:
        answers = [
            await http.post(RUN, json={"prompt": "x", "sae_id": "no_such_sae", "sae_layer": 3})
            for _ in range(3)
        ]
    assert {a.status_code for a in answers} == {404}
    assert {a.json()["error"]["code"] for a in answers} == {"sae_not_found"}
    assert stub_states["engine"].calls == []  # refused before any generation
    # The listing at start-up (or the first miss) answered; the misses are not asked again.
    assert stub_states["sae"].lookups.count("/saes") <= 1


async def test_a_dropped_stream_releases_its_sae_cache(client, stub_states):
    """The client leaves while the first feature chunk is at the (slow) SAE: the run ends the
    SAE service's stream, so its KV cache is not left waiting for the idle eviction."""
    engine, sae = stub_states["engine"], stub_states["sae"]
    engine.output_len, engine.stream_gap_s = 30, 0.1
    sae.mode, sae.slow_s = "slow", 0.6
    body = {"prompt": "leaving", "max_tokens": 30}
    tokens = 0
    async with client.stream("POST", RUN, json=body, headers={"accept": sse.MEDIA_TYPE}) as r:
        async for event, _ in sse.aparse(r.aiter_lines()):
            tokens += event == "token"
            if tokens == 3:  # the feature worker starts with the second; its chunk is out now
                break
    deadline = asyncio.get_running_loop().time() + 10
    while not (releases := [c for c in sae.calls if c.get("stream_end")]):
        assert asyncio.get_running_loop().time() < deadline, "no release reached the SAE"
        await asyncio.sleep(0.1)
    stream_ids = {c["stream_id"] for c in sae.calls}
    assert len(stream_ids) == 1
    assert releases[-1]["from_position"] == len(releases[-1]["token_ids"])

"""A streamed run (`Accept: text/event-stream`) through the whole stack, real parts only:
backend -> vLLM engine stream (tiny model) -> SAE service (demo SAE) -> Postgres. What is
stored equals what the blocking run of the same seed stores (the timeline within the exactness
tolerance: the streamed one is the SAE service's incremental chunks joined); the chunks equal
the one extraction of the whole sequence and cost the SAE no more work than it; a departed
client cancels and is recorded."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import orjson
import pytest

from common import sse
from tests.support.metrics import sample, scrape
from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

RUN = "/playground/activations/run"
EVENTS = {"accept": "text/event-stream"}
BODY = {"prompt": "Name three colours.", "max_tokens": 40, "temperature": 0.9, "seed": 11}
# Columns that differ between two runs of the same request by nature.
# What differs between any two runs (trace_id: each request's own X-Request-ID).
PER_RUN = {"request_id", "created_at", "updated_at", "engine_ms", "sae_ms", "total_ms", "trace_id"}
# The timeline's activations: equal within the exactness tolerance, not to the last bit (the
# streamed run's forward ran in chunks over a KV cache).
TIMELINE = {"feature_timeline", "timeline_packed"}


def assert_close(got, want, where: str = "") -> None:
    """Equal, floats within the exactness tolerance (derived figures such as top features'
    means inherit the activations' last-bit differences)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), where
    elif isinstance(want, dict) and isinstance(got, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def assert_same_timeline(got: list[dict], want: list[dict]) -> None:
    assert [e["position"] for e in got] == list(range(len(want)))
    for g, w in zip(got, want, strict=True):
        for key in ("position", "token_id", "token", "segment", "special"):
            assert g[key] == w[key], (key, g, w)
        assert [f["feature_id"] for f in g["features"]] == [f["feature_id"] for f in w["features"]]
        assert [f["activation"] for f in g["features"]] == pytest.approx(
            [f["activation"] for f in w["features"]], rel=1e-5, abs=1e-6
        )


def streamed(backend_url: str, body: dict, owner: str | None = None) -> list[tuple[str, dict]]:
    headers = {**EVENTS, **({"x-run-owner": owner} if owner else {})}
    with httpx.stream("POST", backend_url + RUN, json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(sse.parse(r.iter_lines()))


async def stored_rows(database_url: str, request_id: str) -> tuple[dict, dict | None]:
    conn = await asyncpg.connect(database_url)
    try:
        index = await conn.fetchrow(
            "SELECT * FROM activation_run_index WHERE request_id = $1", request_id
        )
        preview = await conn.fetchrow(
            "SELECT * FROM activation_run_previews WHERE request_id = $1", request_id
        )
    finally:
        await conn.close()
    assert index is not None
    return dict(index), dict(preview) if preview is not None else None


def without(row: dict, keys: set[str]) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


@pytest.fixture(scope="module")
def pair(backend_url) -> tuple[list[tuple[str, dict]], dict]:
    events = streamed(backend_url, {**BODY, "request_id": "streamed-1"})
    blocking = httpx.post(backend_url + RUN, json={**BODY, "request_id": "blocking-1"}, timeout=300)
    assert blocking.status_code == 200, blocking.text
    return events, blocking.json()


def test_event_order_and_shapes(pair):
    events, blocking = pair
    names = [name for name, _ in events]
    assert names[0] == "started" and names[-1] == "done"
    assert "error" not in names
    started = events[0][1]
    prompt_ids = blocking["output"]["prompt_token_ids"]
    assert started["request_id"] == "streamed-1"
    # A new run: its owner token, once, as the blocking answer gives it (in `done` too).
    assert isinstance(started["owner_token"], str) and started["owner_token"]
    assert events[-1][1]["owner_token"] == started["owner_token"]
    assert [t["token_id"] for t in started["prompt_tokens"]] == prompt_ids
    assert [t["position"] for t in started["prompt_tokens"]] == list(range(len(prompt_ids)))
    tokens = [data for name, data in events if name == "token"]
    assert [t["token_id"] for t in tokens] == blocking["output"]["token_ids"]
    assert [t["step"] for t in tokens] == list(range(len(tokens)))
    assert [t["position"] for t in tokens] == [len(prompt_ids) + i for i in range(len(tokens))]
    assert "".join(t["text"] for t in tokens) == blocking["output"]["text"]
    # The prompt's features come before the answer is complete (right after `started`).
    assert names[1] == "features" or names.index("features") < names.index("done")
    first_features = events[names.index("features")][1]["entries"]
    assert [e["position"] for e in first_features] == list(range(len(prompt_ids)))
    assert names.count("features") >= 2  # the prompt, then the output in chunks
    # The first token is relayed before any SAE work is answered.
    assert names.index("token") < names.index("features")
    assert all("timing_ms" not in t for t in tokens)  # only when asked for


def test_stage_breakdown_when_asked(backend_url):
    headers = {**EVENTS, "x-playground-timing": "1"}
    body = {**BODY, "request_id": "streamed-timing"}
    with httpx.stream("POST", backend_url + RUN, json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200, r.read()
        events = list(sse.parse(r.iter_lines()))
    tokens = [data for name, data in events if name == "token"]
    timing = tokens[0]["timing_ms"]
    stages = ["admitted", "route", "claimed", "engine_open", "engine_prompt", "engine_token"]
    assert list(timing) == [*stages, "queued"]
    values = list(timing.values())
    assert values[0] >= 0 and values == sorted(values)
    assert all("timing_ms" not in t for t in tokens[1:])


def test_done_is_the_blocking_answer_and_the_stored_run(pair, backend_url):
    events, blocking = pair
    done = events[-1][1]
    for key in ("model_id", "prompt", "output", "events", "actions", "status"):
        assert done.get(key) == blocking.get(key), key
    preview, blocking_preview = done["preview"], blocking["preview"]
    assert_same_timeline(preview["feature_timeline"], blocking_preview["feature_timeline"])
    assert_close(preview, blocking_preview, "preview")
    stored = httpx.get(f"{backend_url}/playground/activations/streamed-1").json()
    for key in ("model_id", "prompt", "output", "preview", "status"):
        assert stored.get(key) == done.get(key), key


async def test_stored_rows_equal_the_blocking_runs(pair, database_url):
    streamed_index, streamed_preview = await stored_rows(database_url, "streamed-1")
    blocking_index, blocking_preview = await stored_rows(database_url, "blocking-1")
    assert streamed_index["status"] == "ok"
    assert without(streamed_index, PER_RUN) == without(blocking_index, PER_RUN)
    assert streamed_preview is not None and blocking_preview is not None
    assert_close(
        without(streamed_preview, PER_RUN | TIMELINE), without(blocking_preview, PER_RUN | TIMELINE)
    )
    assert_same_timeline(
        orjson.loads(streamed_preview["feature_timeline"]),
        orjson.loads(blocking_preview["feature_timeline"]),
    )


def test_streamed_features_equal_one_extraction(pair):
    """The chunks (each only its new positions, over the SAE service's KV cache) against the
    blocking run's one extraction of the whole sequence: features at position p depend only on
    tokens <= p. The chunks joined are what the streamed run stored."""
    events, blocking = pair
    chunks = [e for name, data in events if name == "features" for e in data["entries"]]
    assert_same_timeline(chunks, blocking["preview"]["feature_timeline"])
    assert chunks == events[-1][1]["preview"]["feature_timeline"]


def sae_health(sae_url: str) -> dict:
    return httpx.get(sae_url + "/health", headers=SERVICE_AUTH, timeout=30).json()


def test_sae_work_of_a_streamed_run_is_one_extraction(backend_url, sae_url):
    """SAE work (positions through the truncated forward, counted by the SAE service): the
    streamed run's chunks reuse its KV cache, so they cost what one extraction of the whole
    sequence costs, not a prefix per chunk."""
    before = sae_health(sae_url)
    events = streamed(backend_url, {**BODY, "max_tokens": 60, "request_id": "work-1"})
    after = sae_health(sae_url)
    done = events[-1][1]
    positions = len(done["output"]["prompt_token_ids"]) + len(done["output"]["token_ids"])
    chunks = sum(name == "features" for name, _ in events)
    assert chunks >= 3  # the prompt, then the output in more than one chunk
    assert after["work_positions"] - before["work_positions"] == positions
    caches_before, caches_after = before["stream_caches"], after["stream_caches"]
    assert caches_after["misses"] - caches_before["misses"] == 1  # the prompt's chunk
    assert caches_after["hits"] - caches_before["hits"] == chunks - 1
    assert caches_after["streams"] == caches_before["streams"]  # the last chunk ended it


def test_errors_known_up_front_are_plain_http(backend_url):
    response = httpx.post(
        backend_url + RUN, json={**BODY, "max_tokens": 0}, headers=EVENTS, timeout=30
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "validation_error"
    # The engine's own up-front refusal (context exceeded) is plain HTTP too.
    # (Without activations: with them our own timeline cap refuses it first, as plain HTTP too.)
    too_long = {
        **BODY,
        "prompt": "word " * 3000,
        "max_tokens": 2000,
        "request_id": "too-long",
        "collect_activations": False,
    }
    response = httpx.post(backend_url + RUN, json=too_long, headers=EVENTS, timeout=60)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["upstream"] == "engine", response.text
    # The run was claimed before the engine refused: the token comes back as the blocking
    # path gives it with an upstream error.
    assert response.headers.get("x-run-owner")


def test_rerun_needs_the_owner_token(pair, backend_url, database_url):
    events, _ = pair
    token = events[0][1]["owner_token"]
    body = {**BODY, "request_id": "streamed-1"}
    for owner in (None, "not-the-token"):
        headers = {**EVENTS, **({"x-run-owner": owner} if owner else {})}
        response = httpx.post(backend_url + RUN, json=body, headers=headers, timeout=30)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "run_owned"
    again = streamed(backend_url, body, owner=token)
    assert [name for name, _ in again][-1] == "done"
    # The owner's re-run gets no new token, as the blocking re-run.
    assert again[0][1]["owner_token"] is None and again[-1][1]["owner_token"] is None


def in_flight(engine_url: str) -> int:
    return httpx.get(engine_url + "/health", headers=SERVICE_AUTH).json()["in_flight"]


async def leave_after_tokens(
    backend_url: str, body: dict, tokens: int, owner: str | None = None, features: int = 0
) -> None:
    """Read the stream until ``tokens`` token events and ``features`` features events came,
    then close the connection."""
    headers = {**EVENTS, **({"x-run-owner": owner} if owner else {})}
    async with (
        httpx.AsyncClient(base_url=backend_url, timeout=120) as client,
        client.stream("POST", RUN, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        seen, seen_features = 0, 0
        async for name, _ in sse.aparse(response.aiter_lines()):
            seen += name == "token"
            seen_features += name == "features"
            if seen >= tokens and seen_features >= features:
                return


async def wait_for(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_client_gone_cancels_and_stores_a_stopped_run(backend_url, engine_url, database_url):
    """Stop: the run is stored as ``stopped`` (contracts.md, "Stopped runs") with its answer so
    far and the features computed so far (the prompt's chunk, here), and reads back whole."""
    body = {**BODY, "max_tokens": 2000, "request_id": "left-early"}
    await leave_after_tokens(backend_url, body, 3, features=1)

    async def engine_idle() -> bool:
        return in_flight(engine_url) == 0

    async def recorded() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(
                "SELECT error_code FROM activation_run_index WHERE request_id = 'left-early'"
            )
        finally:
            await conn.close()

    await wait_for(engine_idle, "the engine kept generating for a departed client")
    await wait_for(recorded, "no stopped run was recorded")
    index, preview = await stored_rows(database_url, "left-early")
    assert (index["status"], index["error_code"]) == ("stopped", "client_closed")
    assert preview is not None and len(preview["output_token_ids"]) >= 3
    assert preview["finish_reason"] == "stopped" and preview["output_text"]
    async with httpx.AsyncClient(base_url=backend_url, timeout=30) as client:
        run = (await client.get(f"{RUN.rsplit('/', 1)[0]}/left-early")).json()
        top = await client.get(f"{RUN.rsplit('/', 1)[0]}/left-early/top-features?segment=all")
    assert run["status"] == "stopped" and run["error"]["code"] == "client_closed"
    timeline = run["preview"]["feature_timeline"]
    n_tokens = len(preview["prompt_token_ids"]) + len(preview["output_token_ids"])
    assert [e["position"] for e in timeline] == list(range(n_tokens))
    # The prompt's features were computed before the stop, and kept.
    assert any(e["features"] for e in timeline[: len(preview["prompt_token_ids"])])
    assert top.status_code == 200 and top.json()["top_features"]


def stopped_writes(backend_url: str) -> float:
    """How many ``stopped`` runs the backend has written (its /metrics: a write of a stopped
    run is counted once its statement has committed, whether or not the guard that keeps a
    success let it change anything)."""
    samples = scrape(httpx.get(backend_url + "/metrics", timeout=30).text)
    return sample(samples, "playground_run_stage_seconds_count", stage="total", outcome="stopped")


async def test_client_gone_does_not_overwrite_a_success(backend_url, engine_url, database_url):
    async with httpx.AsyncClient(base_url=backend_url, timeout=300) as client:
        ok = await client.post(RUN, json={**BODY, "request_id": "kept"})
    assert ok.status_code == 200
    before = await stored_rows(database_url, "kept")
    owner = ok.json()["owner_token"]
    writes = stopped_writes(backend_url)
    body = {**BODY, "max_tokens": 2000, "request_id": "kept"}
    await leave_after_tokens(backend_url, body, 3, owner=owner)

    async def engine_idle() -> bool:
        return in_flight(engine_url) == 0

    async def stopped_run_written() -> bool:
        return stopped_writes(backend_url) > writes

    await wait_for(engine_idle, "the engine kept generating for a departed client")
    # The cancelled run's clean-up has written its stopped run (over the success: a no-op).
    await wait_for(stopped_run_written, "the departed client's run was never written as stopped")
    assert stopped_writes(backend_url) == writes + 1
    assert await stored_rows(database_url, "kept") == before


async def test_client_gone_releases_the_sae_stream(backend_url, engine_url, sae_url):
    """A departed client's run ends its stream at the SAE service (its KV cache is dropped
    now, not at the idle eviction)."""
    streams_before = sae_health(sae_url)["stream_caches"]["streams"]
    body = {**BODY, "max_tokens": 2000, "request_id": "left-after-features"}
    await leave_after_tokens(backend_url, body, 1, features=1)  # the prompt's chunk is done

    async def released() -> bool:
        idle = in_flight(engine_url) == 0
        return idle and sae_health(sae_url)["stream_caches"]["streams"] == streams_before

    await wait_for(released, "the SAE stream of a departed client was kept")

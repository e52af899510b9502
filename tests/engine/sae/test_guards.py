"""Staging guards of the SAE service, on the real service (tiny model, demo SAE): the service
token, the body byte limit, the bounded job queue and jobs dropped when their caller leaves."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from common.errors import Overloaded
from engine.sae.app import build_service, create_app
from engine.sae.batching import QueueFull
from engine.sae.encode_batch import EncodeJob
from engine.sae.protocol import ExtractRequest
from engine.sae.settings import Settings
from tests.support.servers import serve_app

TOKEN = "sae-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def settings(tiny_model_dir, demo_sae_dir) -> Settings:
    return Settings(
        model=str(tiny_model_dir),
        sae_dirs=[demo_sae_dir],
        api_token=TOKEN,
        max_body_bytes=BODY_LIMIT,
        max_queued_jobs=3,
        torch_threads=1,
    )


@pytest.fixture(scope="module")
def url(settings):
    with serve_app(create_app(settings)) as base:
        yield base


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_token_required_except_health(url):
    body = {"token_ids": [128000, 9906], "top_k": 3}
    assert_error(httpx.post(url + "/extract_features", json=body), 401, "unauthorized")
    wrong = {"authorization": "Bearer not-the-token"}
    assert_error(
        httpx.post(url + "/extract_features", json=body, headers=wrong), 401, "unauthorized"
    )
    assert_error(httpx.get(url + "/saes"), 401, "unauthorized")
    assert_error(httpx.get(url + "/no-such-route"), 401, "unauthorized")
    assert httpx.get(url + "/health").status_code == 200
    ok = httpx.post(url + "/extract_features", json=body, headers=AUTH)
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["feature_timeline"]) == 2


def test_body_over_the_limit_is_413_before_parsing(url):
    # Not even valid JSON: a parser would answer 422; the limit answers first.
    big = b"[" * (BODY_LIMIT + 1)
    response = httpx.post(
        url + "/extract_features",
        content=big,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(BODY_LIMIT // 1024 + 2):
            yield b" " * 1024

    response = httpx.post(
        url + "/extract_features",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")
    # A chunked body within the limit still works.
    small = b'{"token_ids": [128000, 9906], "top_k": 2}'
    response = httpx.post(
        url + "/extract_features",
        content=iter([small[:10], small[10:]]),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text


async def test_queue_is_bounded_and_departed_callers_are_dropped(settings):
    """The batcher's worker is not started yet: jobs wait in its queue. Past the bound a
    submit is refused at once; a cancelled caller's job is skipped, never computed."""
    service = await asyncio.to_thread(build_service, settings)
    batcher = service.batcher
    meta = service.registry.entries[service.registry.default]

    def job() -> EncodeJob:
        return EncodeJob([128000, 9906, 1917], meta, top_k=4)

    waiting = [asyncio.ensure_future(batcher.submit(job())) for _ in range(3)]
    # Each submit queues its job before it first suspends: yield to the loop (no clock) until
    # all three have, or one has ended (then the count below says what went wrong).
    for _ in range(1000):
        if batcher.queued() == 3 or any(w.done() for w in waiting):
            break
        await asyncio.sleep(0)
    assert batcher.queued() == 3
    with pytest.raises(QueueFull):
        await batcher.submit(job())
    # The service answers it as 503 overloaded with Retry-After.
    with pytest.raises(Overloaded) as refused:
        await service.extract(ExtractRequest(token_ids=[128000, 9906, 1917], top_k=4))
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}

    waiting[1].cancel()  # its caller left
    await asyncio.gather(waiting[1], return_exceptions=True)
    batcher.start()
    try:
        first, third = await asyncio.wait_for(asyncio.gather(waiting[0], waiting[2]), 60)
    finally:
        await batcher.stop()
    assert len(first.top_values) == 3 and len(third.top_values) == 3
    assert batcher.jobs_dropped == 1
    assert batcher.queued() == 0

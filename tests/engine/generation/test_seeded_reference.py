"""A seeded request's tokens against a reference other than itself (issue 19): the same seeded
request sent alone and inside a batch of other, different requests (``/generate/batch``, and
concurrent ``/generate`` calls) gives the same tokens: its seed is its own, not the batch's.
Real vLLM engine on the tiny Llama-3.1 (the session's `engine_url`)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

# Sampled, not greedy (so the seed decides the tokens): the page's defaults.
SEEDED = {
    "prompt": "Tell me a story about a lighthouse.",
    "max_tokens": 16,
    "temperature": 0.9,
    "top_p": 0.95,
    "top_k": 0,
    "seed": 1234,
}
# Its neighbours: other prompts, lengths and settings; seeded with other seeds, unseeded, greedy.
OTHERS = [
    {"prompt": "Name three colours.", "max_tokens": 12, "temperature": 1.0, "seed": 5},
    {
        "prompt": "Tell me a story about a lighthouse.",
        "max_tokens": 20,
        "temperature": 0.9,
        "top_p": 0.95,
        "seed": 99,
    },
    {"prompt": "What is 2 + 2?", "max_tokens": 8, "temperature": 1.3, "top_k": 40},
    {"prompt": "def fib(n):", "max_tokens": 24, "temperature": 0, "chat": False},
    {"prompt": "Hello there", "max_tokens": 4, "temperature": 0.7, "top_p": 0.5, "seed": 1234},
]


def generate(engine_url: str, body: dict) -> dict:
    response = httpx.post(engine_url + "/generate", json=body, headers=SERVICE_AUTH, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_seeded_request_alone_and_in_a_batch_gives_the_same_tokens(engine_url):
    alone = generate(engine_url, SEEDED)["output_token_ids"]
    assert alone
    # The same seed with another seed differs (else "the same tokens" would prove nothing).
    assert generate(engine_url, {**SEEDED, "seed": 4321})["output_token_ids"] != alone

    requests = [OTHERS[0], OTHERS[1], SEEDED, OTHERS[2], OTHERS[3], OTHERS[4]]
    response = httpx.post(
        engine_url + "/generate/batch",
        json={"requests": requests},
        headers=SERVICE_AUTH,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(requests)
    assert results[2]["output_token_ids"] == alone
    # The batch's seeded neighbours keep their own answers too.
    for i in (0, 1, 4):
        assert (
            results[i]["output_token_ids"] == generate(engine_url, requests[i])["output_token_ids"]
        ), i


async def test_seeded_request_among_concurrent_requests_gives_the_same_tokens(engine_url):
    alone = generate(engine_url, SEEDED)["output_token_ids"]
    async with httpx.AsyncClient(base_url=engine_url, timeout=300, headers=SERVICE_AUTH) as http:
        # The others first and twice over, so that the seeded one joins a running batch.
        bodies = [*OTHERS, SEEDED, *OTHERS]
        answers = await asyncio.gather(*(http.post("/generate", json=b) for b in bodies))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert answers[len(OTHERS)].json()["output_token_ids"] == alone

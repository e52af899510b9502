"""Per-request steering through the engine's HTTP API, on the real vLLM engine (tiny Llama-3.1,
CPU, float32; the session's `engine_url`): steered and plain requests share batches and every
plain request gets exactly its solo tokens; scale 0 is the plain answer; bad steering is a 422
before anything runs; 64 concurrent seeded requests leave the engine serving, each seed giving
its solo tokens."""

from __future__ import annotations

import asyncio
import base64
import math

import httpx
import numpy as np
import pytest

from common import sse
from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

D_MODEL = 64  # the tiny model's residual width
WORDS = [
    "river",
    "mountain",
    "city",
    "music",
    "light",
    "number",
    "garden",
    "window",
    "paper",
    "coffee",
    "bridge",
    "story",
]


def b64(values) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def vector(seed: int, norm: float = 40.0) -> str:
    v = np.random.default_rng(seed).standard_normal(D_MODEL)
    return b64(v / np.linalg.norm(v) * norm)


STEER = [
    {"layer": 3, "vector_b64": vector(1), "scale": 1.0},
    {"layer": 16, "vector_b64": vector(2)},
]


def prompt(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(words))


# Plain requests: greedy and seeded sampling, short and long prompts (a long prompt prefills
# over steps while others decode), some streamed.
PLAIN = [
    {"prompt": prompt(i, words), "max_tokens": 16, "temperature": temperature, "seed": seed}
    for i, (words, temperature, seed) in enumerate(
        [(3, 0.0, None), (40, 0.0, None), (12, 0.8, 7), (300, 0.0, None), (5, 1.0, 11)]
    )
]


async def generate(client: httpx.AsyncClient, body: dict, *, stream: bool = False) -> list[int]:
    if not stream:
        response = await client.post("/generate", json=body)
        assert response.status_code == 200, response.text
        return response.json()["output_token_ids"]
    async with client.stream("POST", "/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200, await response.aread()
        lines = [line async for line in response.aiter_lines()]
    events = list(sse.parse(lines))
    assert events[-1][0] == "done", events[-1]
    return events[-1][1]["output_token_ids"]


def client(engine_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=engine_url, headers=SERVICE_AUTH, timeout=300)


async def solo(engine_url: str, bodies: list[dict]) -> list[list[int]]:
    async with client(engine_url) as c:
        return [await generate(c, body) for body in bodies]


async def test_plain_requests_beside_steered_ones_get_their_solo_tokens(engine_url):
    alone = await solo(engine_url, PLAIN)
    steered = [{**body, "steer": STEER} for body in PLAIN]
    zero = [{**body, "steer": [{**s, "scale": 0.0} for s in STEER]} for body in PLAIN[:2]]

    async def staggered(c, i, body, stream):
        await asyncio.sleep(0.15 * (i % 4))  # new prefills join batches that are decoding
        return await generate(c, body, stream=stream)

    async with client(engine_url) as c:
        batch = c.post("/generate/batch", json={"requests": [PLAIN[0], steered[1], PLAIN[2]]})
        jobs = [staggered(c, i, body, i % 2 == 1) for i, body in enumerate(PLAIN)]
        jobs += [staggered(c, i + 1, body, i % 2 == 0) for i, body in enumerate(steered)]
        jobs += [staggered(c, i, body, False) for i, body in enumerate(zero)]
        *answers, batched = await asyncio.gather(*jobs, batch)
    plain_answers = answers[: len(PLAIN)]
    steered_answers = answers[len(PLAIN) : 2 * len(PLAIN)]
    zero_answers = answers[2 * len(PLAIN) :]
    assert plain_answers == alone
    assert zero_answers == alone[:2]
    assert batched.status_code == 200, batched.text
    results = [r["output_token_ids"] for r in batched.json()["results"]]
    assert results[0] == alone[0] and results[2] == alone[2]
    # The steering took effect (a vector of norm 40 on a residual of norm ~1).
    assert results[1] != alone[1]
    assert all(s != a for s, a in zip(steered_answers, alone, strict=True))
    # Steering is deterministic: the same steered request, twice, concurrently or not.
    assert steered_answers[1] == results[1]
    assert (await solo(engine_url, [steered[3]]))[0] == steered_answers[3]


NAN = b64([math.nan] + [0.0] * (D_MODEL - 1))
INF = b64([math.inf] + [0.0] * (D_MODEL - 1))


@pytest.mark.parametrize(
    "steer, code",
    [
        ([{"layer": 3, "vector_b64": b64([0.0] * (D_MODEL - 1))}], "steer_vector_wrong_length"),
        ([{"layer": 3, "vector_b64": b64([0.0] * (D_MODEL + 1))}], "steer_vector_wrong_length"),
        ([{"layer": 3, "vector_b64": NAN}], "steer_vector_not_finite"),
        ([{"layer": 3, "vector_b64": INF}], "steer_vector_not_finite"),
        (
            [{"layer": 3, "vector_b64": b64([3e38] * D_MODEL), "scale": 10}],
            "steer_vector_not_finite",
        ),
        ([{"layer": 3, "vector_b64": "not base64!"}], "steer_vector_invalid"),
        ([{"layer": 32, "vector_b64": vector(1)}], "steer_layer_out_of_range"),
        ([{"layer": 3, "vector_b64": vector(1), "scale": 1001}], "steer_scale_too_large"),
        ([{"layer": 3, "vector_b64": vector(1)}] * 9, "validation_error"),
        ([{"layer": 3, "vector_b64": vector(1), "extra": 1}], "validation_error"),
        ([{"layer": -1, "vector_b64": vector(1)}], "validation_error"),
    ],
)
def test_bad_steering_is_a_422(engine_url, steer, code):
    for stream in (False, True):
        body = {"prompt": "hi", "max_tokens": 2, "steer": steer, "stream": stream}
        response = httpx.post(engine_url + "/generate", json=body, headers=SERVICE_AUTH, timeout=60)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    batch = {"requests": [{"prompt": "hi", "max_tokens": 2}, {"prompt": "hi", "steer": steer}]}
    response = httpx.post(engine_url + "/generate/batch", json=batch, headers=SERVICE_AUTH)
    assert response.status_code == 422 and response.json()["error"]["code"] == code
    if code != "validation_error":
        assert response.json()["error"]["message"].startswith("requests[1]: steer[")


async def test_64_concurrent_seeded_requests_keep_the_engine_serving(engine_url):
    # Prompts of ~150 tokens: 64 of them exceed the engine's 2048 tokens per step, so prompts
    # are prefilled in chunks, whose sampled tokens vLLM discards and rewinds (docs/engine.md).
    bodies = [
        {
            "prompt": prompt(i, 120 + i),
            "chat": False,
            "max_tokens": 8,
            "temperature": 1.0,
            "top_p": 0.95,
            "seed": 1000 + i % 32,  # each seed twice, on different prompts
        }
        for i in range(64)
    ]
    async with client(engine_url) as c:
        together = await asyncio.gather(*(generate(c, body) for body in bodies))
        health = await c.get("/health")
    assert health.status_code == 200, health.text
    assert all(tokens for tokens in together)
    again = await solo(engine_url, [bodies[i] for i in (0, 17, 40, 63)])
    assert again == [together[i] for i in (0, 17, 40, 63)]

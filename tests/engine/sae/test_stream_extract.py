"""Incremental extraction for a stream, on the real SAE service (tiny Llama-3.1, real HTTP):
chunks that reuse a per-stream KV cache equal one extraction of the whole sequence, run only
their new positions through the truncated forward ("SAE work"), fall back to the whole prefix
when the cache is absent, and the caches stay within their bounds."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import httpx
import pytest

from engine.sae.stream_cache import StreamCaches, StreamState
from tests.engine.sae.test_api import features

SAE = {"sae_id": "test_jumprelu", "layer": 16, "top_k": 16}


def extract(url: str, body: dict) -> dict:
    response = httpx.post(url + "/extract_features", json={**SAE, **body}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def assert_equal_within_tolerance(got: list[dict], want: list[dict]) -> None:
    """Same tolerance as the service's exactness tests (test_api's layout twins)."""
    for key in ("position", "token_id", "token", "segment", "special"):
        assert [e[key] for e in got] == [e[key] for e in want], key
    fg, fw = features(got), features(want)
    assert [[f for f, _ in p] for p in fg] == [[f for f, _ in p] for p in fw]
    for pg, pw in zip(fg, fw, strict=True):
        assert [v for _, v in pg] == pytest.approx([v for _, v in pw], rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def long_sequence(sequences) -> list[int]:
    """A prompt-and-answer sized sequence: every sample sequence one after another."""
    return list(itertools.chain.from_iterable(sequences))


def stream_chunks(url: str, ids: list[int], cuts: list[int], prompt_len: int) -> list[dict]:
    """Extract ``ids`` as a stream: the prefix up to each cut, answering only its new
    positions; the last chunk ends the stream."""
    stream_id = uuid.uuid4().hex
    answers, sent = [], 0
    for n, cut in enumerate(cuts):
        answers.append(
            extract(
                url,
                {
                    "token_ids": ids[:cut],
                    "output_start": prompt_len,
                    "stream_id": stream_id,
                    "from_position": sent,
                    "stream_end": n == len(cuts) - 1,
                },
            )
        )
        sent = cut
    return answers


def test_chunks_equal_one_extraction_and_run_only_new_positions(sae_service_url, long_sequence):
    ids = long_sequence
    prompt_len = 20
    cuts = [prompt_len, prompt_len + 1, prompt_len + 2, prompt_len + 7, prompt_len + 23, len(ids)]
    assert cuts == sorted(set(cuts)) and len(ids) > prompt_len + 23
    answers = stream_chunks(sae_service_url, ids, cuts, prompt_len)
    whole = extract(sae_service_url, {"token_ids": ids, "output_start": prompt_len})
    chunked = [e for a in answers for e in a["feature_timeline"]]
    assert_equal_within_tolerance(chunked, whole["feature_timeline"])
    # The first chunk has no cache; every later one ran only its new positions.
    assert [a["work"]["cache"] for a in answers] == ["miss"] + ["hit"] * (len(cuts) - 1)
    assert [a["work"]["positions"] for a in answers] == [
        b - a for a, b in zip([0, *cuts], cuts, strict=False)
    ]
    assert [a["from_position"] for a in answers] == [0, *cuts[:-1]]
    # SAE work of the stream equals one extraction's; a plain request reports its own.
    assert sum(a["work"]["positions"] for a in answers) == len(ids)
    assert whole["work"] == {"positions": len(ids), "cache": None}


def test_absent_cache_recomputes_the_prefix(sae_service_url, long_sequence):
    """A chunk whose cache is gone (never made, evicted, another replica) runs the whole
    prefix and still answers only its own positions; the cache it leaves serves the next."""
    ids = long_sequence[:40]
    whole = extract(sae_service_url, {"token_ids": ids, "output_start": 10})["feature_timeline"]
    stream_id = uuid.uuid4().hex
    body = {"output_start": 10, "stream_id": stream_id}
    first = extract(sae_service_url, {**body, "token_ids": ids[:30], "from_position": 25})
    assert first["work"] == {"positions": 30, "cache": "miss"}
    assert_equal_within_tolerance(first["feature_timeline"], whole[25:30])
    second = extract(sae_service_url, {**body, "token_ids": ids, "from_position": 30})
    assert second["work"] == {"positions": 10, "cache": "hit"}
    assert_equal_within_tolerance(second["feature_timeline"], whole[30:])
    # Asked again from an earlier position (a retried chunk): the cache is cut back, not wrong.
    again = extract(sae_service_url, {**body, "token_ids": ids, "from_position": 28})
    assert again["work"] == {"positions": 12, "cache": "hit"}
    assert_equal_within_tolerance(again["feature_timeline"], whole[28:])
    # A different prefix under the same id (not this stream's tokens) is a miss, and right.
    other = [*ids[:20], *reversed(ids[20:])]
    want = extract(sae_service_url, {"token_ids": other, "output_start": 10})["feature_timeline"]
    swapped = extract(sae_service_url, {**body, "token_ids": other, "from_position": 35})
    assert swapped["work"]["cache"] == "miss"
    assert_equal_within_tolerance(swapped["feature_timeline"], want[35:])


def test_stream_end_drops_the_cache(sae_service_url, long_sequence):
    ids = long_sequence[:30]
    body = {"output_start": 10, "stream_id": uuid.uuid4().hex}
    extract(sae_service_url, {**body, "token_ids": ids[:10]})
    end = extract(
        sae_service_url, {**body, "token_ids": ids[:20], "from_position": 10, "stream_end": True}
    )
    assert end["work"] == {"positions": 10, "cache": "hit"}
    after = extract(sae_service_url, {**body, "token_ids": ids, "from_position": 20})
    assert after["work"] == {"positions": 30, "cache": "miss"}
    # Every position answered already: an end alone computes nothing and drops the cache.
    streams = httpx.get(sae_service_url + "/health").json()["stream_caches"]["streams"]
    only_end = {**body, "token_ids": ids, "from_position": 30, "stream_end": True}
    assert extract(sae_service_url, only_end)["feature_timeline"] == []
    health = httpx.get(sae_service_url + "/health").json()
    assert health["stream_caches"]["streams"] == streams - 1


async def test_streams_interleaved_with_plain_requests(sae_service_url, sequences):
    """Chunks of several streams and plain extractions in the same batches: each answer equals
    its own one-shot extraction."""
    async with httpx.AsyncClient(base_url=sae_service_url, timeout=120) as client:

        async def post(body: dict) -> dict:
            response = await client.post("/extract_features", json={**SAE, **body})
            assert response.status_code == 200, response.text
            return response.json()

        async def one_stream(ids: list[int]) -> list[dict]:
            stream_id, sent, out = uuid.uuid4().hex, 0, []
            for cut in range(3, len(ids) + 4, 4):
                cut = min(cut, len(ids))
                if cut <= sent:
                    break
                body = {"token_ids": ids[:cut], "stream_id": stream_id, "from_position": sent}
                out += (await post(body))["feature_timeline"]
                sent = cut
            return out

        long = [s for s in sequences if len(s) >= 8]
        results = await asyncio.gather(
            *(one_stream(ids) for ids in long), *(post({"token_ids": ids}) for ids in long)
        )
    streamed, plain = results[: len(long)], results[len(long) :]
    for got, want in zip(streamed, plain, strict=True):
        assert_equal_within_tolerance(got, want["feature_timeline"])


def test_from_position_past_the_sequence(sae_service_url):
    response = httpx.post(
        sae_service_url + "/extract_features",
        json={**SAE, "token_ids": [1, 2, 3], "from_position": 3, "stream_id": "s"},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "from_position_out_of_range"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(ids: list[int], nbytes: int) -> StreamState:
    return StreamState(token_ids=ids, depth=17, kv=None, nbytes=nbytes)


def test_cache_bounds_count_bytes_and_idle():
    clock = Clock()
    caches = StreamCaches(max_streams=2, max_bytes=100, idle_s=10, clock=clock)
    caches.put("a", state([1], 40))
    clock.now = 1
    caches.put("b", state([1], 40))
    clock.now = 2
    caches.put("c", state([1], 40))  # over the count: "a" (least recently used) goes
    assert (len(caches), caches.nbytes) == (2, 80)
    assert caches.take("a", [1, 2], 17) is None
    taken = caches.take("b", [1, 2], 17)  # a hit leaves the cache while it computes
    assert taken is not None and len(caches) == 1
    caches.put("b", state([1, 2], 70))  # 40 + 70 > 100: "c" goes
    assert (len(caches), caches.nbytes) == (1, 70)
    caches.put("big", state([1], 101))  # larger than the whole bound: not kept
    assert caches.take("big", [1], 17) is None and caches.stats.too_big == 1
    # A different depth or a sequence the state is not a prefix of: a miss.
    caches.put("b", state([1, 2], 70))
    assert caches.take("b", [1, 2, 3], 5) is None
    caches.put("b", state([1, 2], 70))
    assert caches.take("b", [1, 3, 3], 17) is None
    # Idle for idle_s: swept.
    caches.put("d", state([1], 10))
    clock.now = 11.9
    caches.sweep()
    assert len(caches) == 1
    clock.now = 12.0
    caches.sweep()
    assert (len(caches), caches.nbytes) == (0, 0)

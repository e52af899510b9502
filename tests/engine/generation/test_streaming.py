"""`POST /generate` with `"stream": true` on the real vLLM engine serving the tiny Llama-3.1:
the prompt, token events, then `done` equal to the blocking answer; whole characters in every
text delta; errors known up front as plain HTTP; a departed client aborting its request."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from transformers import AutoTokenizer

from common import sse
from engine.generation.token_text import TokenTexts
from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

# Multi-byte characters that the byte-level BPE cuts into several tokens.
MULTIBYTE = "Ünïcödé 😀 日本語の文章 🧪🦙 ok"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def stream(engine_url: str, body: dict) -> list[tuple[str, dict]]:
    with httpx.stream(
        "POST",
        engine_url + "/generate",
        json={**body, "stream": True},
        headers=SERVICE_AUTH,
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse.parse(response.iter_lines()))


def blocking(engine_url: str, body: dict) -> dict:
    response = httpx.post(engine_url + "/generate", json=body, headers=SERVICE_AUTH, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def split_partial_characters(tokenizer, ids: list[int]) -> int:
    """How many of these tokens end inside a multi-byte character on their own."""
    return sum("\ufffd" in tokenizer.decode([i]) for i in ids)


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "Hello there", "max_tokens": 24, "temperature": 0},
        {"prompt": MULTIBYTE, "max_tokens": 40, "temperature": 1.0, "top_p": 1.0, "seed": 5},
        {"prompt": "raw text", "chat": False, "max_tokens": 16, "temperature": 0.8, "seed": 1},
    ],
)
def test_stream_equals_blocking_answer(engine_url, body):
    events = stream(engine_url, body)
    names = [name for name, _ in events]
    assert names == ["prompt"] + ["token"] * (len(events) - 2) + ["done"]
    done = events[-1][1]
    answer = blocking(engine_url, body)
    prompt = events[0][1]
    assert prompt["prompt_token_ids"] == answer["prompt_token_ids"]
    assert prompt["request_id"] == done["request_id"]
    assert len(prompt["tokens"]) == len(prompt["prompt_token_ids"])
    for field in ("output_text", "output_token_ids", "prompt_token_ids", "finish_reason", "usage"):
        assert done[field] == answer[field], field
    assert set(done["timings_ms"]) == {"queue", "generate", "total"}
    tokens = [data for name, data in events if name == "token"]
    assert [t["step"] for t in tokens] == list(range(len(answer["output_token_ids"])))
    assert [t["token_id"] for t in tokens] == answer["output_token_ids"]
    assert "".join(t["text"] for t in tokens) == answer["output_text"]


def test_text_deltas_never_split_a_character(engine_url, tokenizer):
    """The random-weight model samples near-uniformly over the vocabulary, byte-fragment tokens
    included (about one in a hundred): sample until answers hold some. Every delta is whole
    characters and the deltas add up to the answer's text."""
    fragments = 0
    for seed in range(8):
        body = {"prompt": MULTIBYTE, "max_tokens": 128, "temperature": 2.0, "top_p": 1.0}
        events = stream(engine_url, {**body, "seed": seed})
        done = events[-1][1]
        texts = [data["text"] for name, data in events if name == "token"]
        assert "".join(texts) == done["output_text"]
        # A split character would show as U+FFFD in a delta, never in the answer's text.
        assert sum(t.count("\ufffd") for t in texts) == done["output_text"].count("\ufffd")
        fragments += split_partial_characters(tokenizer, done["output_token_ids"])
        if fragments >= 3:
            break
    assert fragments >= 3, "too few tokens ended mid-character: the check did not run"


def test_token_texts_hold_back_partial_characters(tokenizer):
    """The splitter itself, on the real tokenizer: the tokens of "😀" give "" until the last."""
    ids = tokenizer.encode(MULTIBYTE, add_special_tokens=False)
    assert split_partial_characters(tokenizer, ids) > 0
    one_by_one = TokenTexts(tokenizer, [])
    pieces = [one_by_one._step(i) for i in ids]
    assert "".join(pieces) == MULTIBYTE
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces  # a token ending mid-character contributes nothing yet
    # Several tokens at once (the consumer fell behind): split per token, same pieces.
    grouped = TokenTexts(tokenizer, [])
    assert grouped.split(ids, MULTIBYTE) == pieces
    # A text the split does not add up to goes whole to the group's last token.
    assert TokenTexts(tokenizer, []).split(ids[:3], "xyz") == ["", "", "xyz"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "hi", "max_tokens": 4097}, "max_tokens_too_large"),
        ({"prompt": "word " * 5000, "max_tokens": 1}, "context_length_exceeded"),
        ({"prompt": "hi", "max_tokens": 0}, "validation_error"),
    ],
)
def test_errors_known_up_front_are_plain_http(engine_url, body, code):
    response = httpx.post(
        engine_url + "/generate", json={**body, "stream": True}, headers=SERVICE_AUTH, timeout=60
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code


def test_batch_does_not_stream(engine_url):
    body = {"requests": [{"prompt": "hi", "max_tokens": 1, "stream": True}]}
    response = httpx.post(
        engine_url + "/generate/batch", json=body, headers=SERVICE_AUTH, timeout=60
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "stream_not_supported"


def in_flight(engine_url: str) -> int:
    return httpx.get(engine_url + "/health", headers=SERVICE_AUTH).json()["in_flight"]


async def test_client_disconnect_aborts_stream(engine_url):
    """Tokens arrive while the engine still generates; closing the connection then aborts the
    request long before its 3000 tokens could have been generated."""
    body = {"prompt": "Hello there", "max_tokens": 3000, "temperature": 0, "stream": True}
    async with (
        httpx.AsyncClient(base_url=engine_url, headers=SERVICE_AUTH, timeout=120) as client,
        client.stream("POST", "/generate", json=body) as response,
    ):
        seen = 0
        async for name, _ in sse.aparse(response.aiter_lines()):
            seen += name == "token"
            if seen == 3:
                break
        assert in_flight(engine_url) == 1
    # Leaving the block closed the connection mid-stream.
    deadline = time.monotonic() + 20
    while in_flight(engine_url) != 0:
        assert time.monotonic() < deadline, "the engine kept generating for a departed client"
        await asyncio.sleep(0.1)
    assert blocking(engine_url, {"prompt": "hi", "max_tokens": 2})["usage"]["output_tokens"] == 2

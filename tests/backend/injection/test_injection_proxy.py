"""The injection playground proxy keeps the Rust backend's routing exactly:
llama-3.1-8b -> modularai/Llama-3.1-8B-Instruct-GGUF at PLAYGROUND_LLAMA_8B_URL,
qwen-14b -> PLAYGROUND_QWEN_14B_URL. Stub OpenAI servers record what they received."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from backend.app import create_app
from backend.injection.proxy import InjectionProxy
from backend.settings import Settings
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

MESSAGES = [{"role": "user", "content": "Hi"}]


async def test_llama_routing_pinned(client, stub_states):
    response = await client.post(
        "/playground/chat/completions",
        json={"model": "llama-3.1-8b", "messages": MESSAGES, "max_tokens": 7, "mods": ["x"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["server"] == "llama"
    assert stub_states["qwen"].calls == []
    (call,) = stub_states["llama"].calls
    assert call["body"] == {
        "model": "modularai/Llama-3.1-8B-Instruct-GGUF",
        "messages": MESSAGES,
        "max_tokens": 7,
        "mods": ["x"],  # unknown OpenAI/MAX extensions pass through untouched
    }
    assert call["authorization"] == "Bearer admin-secret"


async def test_qwen_routing(client, stub_states):
    response = await client.post(
        "/playground/chat/completions", json={"model": "qwen-14b", "messages": MESSAGES}
    )
    assert response.status_code == 200
    assert response.json()["server"] == "qwen"
    assert stub_states["llama"].calls == []
    assert stub_states["qwen"].calls[0]["body"]["model"] == "qwen-14b"


async def test_streaming_passed_through(client, stub_states):
    chunks = []
    async with client.stream(
        "POST",
        "/playground/chat/completions",
        json={"model": "llama-3.1-8b", "messages": MESSAGES, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    events = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(orjson.loads(e)["delta"] for e in events[:-1]) == "Hello!"
    assert all(
        orjson.loads(e)["model"] == "modularai/Llama-3.1-8B-Instruct-GGUF" for e in events[:-1]
    )
    assert stub_states["llama"].calls[0]["body"]["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors(client, stub_states, stream):
    stub_states["llama"].mode = "error500"
    response = await client.post(
        "/playground/chat/completions",
        json={"model": "llama-3.1-8b", "messages": MESSAGES, "stream": stream},
    )
    assert response.status_code == 502
    assert response.json()["error"]["upstream"] == "llama-3.1-8b"
    stub_states["llama"].mode = "slow"
    response = await client.post(
        "/playground/chat/completions", json={"model": "llama-3.1-8b", "messages": MESSAGES}
    )
    assert response.status_code == 504


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4", "messages": MESSAGES},
        {"model": "llama-3.1-8b", "messages": []},
        {"model": "llama-3.1-8b"},
        {"model": "llama-3.1-8b", "messages": MESSAGES, "temperature": 5},
        {"model": "llama-3.1-8b", "messages": MESSAGES, "max_tokens": 0},
    ],
)
async def test_bad_requests(client, stub_states, body):
    response = await client.post("/playground/chat/completions", json=body)
    assert response.status_code == 422
    assert stub_states["llama"].calls == []


async def test_unconfigured_or_down_server(db_uri, stub_urls, dead_url):
    settings = backend_settings(
        db_uri, {**stub_urls, "llama": dead_url}, playground_qwen_14b_url=None
    )
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for model in ("llama-3.1-8b", "qwen-14b"):
                response = await client.post(
                    "/playground/chat/completions", json={"model": model, "messages": MESSAGES}
                )
                assert response.status_code == 503
                assert response.json()["error"]["upstream"] == model


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"max_tokens": 2049}, "max_tokens"),
        ({"max_completion_tokens": 4096}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"best_of": 3}, "best_of"),
        ({"ignore_eos": True}, "ignore_eos"),
        ({"max_tokens": 10, "min_tokens": 11}, "min_tokens"),
        ({"min_tokens": 513}, "min_tokens"),  # past the default max_tokens it would get
        ({"messages": [{"role": "user", "content": "x"}] * 65}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 32_001}]}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 32_000}]}]},
            "messages",
        ),
    ],
)
async def test_cost_fields_over_their_caps_are_refused(client, stub_states, extra, field):
    body = {"model": "llama-3.1-8b", "messages": MESSAGES, **extra}
    response = await client.post("/playground/chat/completions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "over_cap" and error["message"].startswith(field)
    assert stub_states["llama"].calls == []


async def test_within_caps_forwarded_with_default_max_tokens(client, stub_states):
    body = {
        "model": "qwen-14b",
        "messages": MESSAGES,
        "n": 1,
        "min_tokens": 4,
        "ignore_eos": False,
        "injection": {"position": 3, "tokens": [1, 2]},  # the playground's own extension
    }
    response = await client.post("/playground/chat/completions", json=body)
    assert response.status_code == 200, response.text
    (call,) = stub_states["qwen"].calls
    assert call["body"] == {**body, "model": "qwen-14b", "max_tokens": 512}
    # max_completion_tokens alone: no default added.
    body = {"model": "qwen-14b", "messages": MESSAGES, "max_completion_tokens": 9}
    await client.post("/playground/chat/completions", json=body)
    assert stub_states["qwen"].calls[1]["body"] == body


async def test_gzip_stream_relayed_byte_exact(client, stub_states):
    stub_states["llama"].mode = "gzip"
    async with client.stream(
        "POST",
        "/playground/chat/completions",
        json={"model": "llama-3.1-8b", "messages": MESSAGES, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    text = gzip.decompress(raw).decode()
    events = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(orjson.loads(e)["delta"] for e in events[:-1]) == "Hello!"


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://max.example.com", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000/v1", True),
        ("http://[::1]:8000", True),
        ("http://max.example.com", False),
        ("http://10.0.0.5:8000", False),
    ],
)
def test_admin_key_only_over_https_or_loopback(url, sent):
    settings = Settings(playground_admin_key="k-123", playground_llama_8b_url=url)
    proxy = InjectionProxy(settings, httpx.AsyncClient())
    headers = proxy._headers(url)
    assert ("authorization" in headers) is sent
    assert "k-123" not in repr(settings) and "k-123" not in str(settings.model_dump())


async def test_content_past_64_bit_integers_is_422_not_500(client, stub_states):
    """Found by test_fuzz: list content holding an integer JSON allows but orjson cannot write
    (so it cannot be forwarded) was a 500 in the caps check."""
    response = await client.post(
        "/playground/chat/completions",
        content=f'{{"model": "qwen-14b", "messages": [{{"role": "user", "content": '
        f'[{{"n": {2**70}}}]}}]}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "cannot be forwarded" in response.json()["error"]["message"]
    assert stub_states["qwen"].calls == []

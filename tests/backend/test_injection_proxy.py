"""The injection playground proxy keeps the Rust backend's routing exactly:
llama-3.1-8b -> modularai/Llama-3.1-8B-Instruct-GGUF at PLAYGROUND_LLAMA_8B_URL,
qwen-14b -> PLAYGROUND_QWEN_14B_URL. Stub OpenAI servers record what they received."""

from __future__ import annotations

import httpx
import orjson
import pytest

from backend.app import create_app
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

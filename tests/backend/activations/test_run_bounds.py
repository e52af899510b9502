"""One source for every bound of a run (backend/activations/limits.py): the page's config
carries the numbers the form shows and checks, and the API's 422 names the same numbers,
whatever the value (the request model's hard cap used to answer for values above it, with a
number of its own). A prompt of nothing but whitespace is refused before the engine."""

from __future__ import annotations

import html
import json
import re

import pytest

RUN = "/playground/activations/run"


async def page_limits(client) -> dict:
    page = await client.get("/playground/activations")
    match = re.search(r'<meta name="run-limits" content="([^"]*)">', page.text)
    assert match, "the page carries no run limits"
    return json.loads(html.unescape(match.group(1)))


async def test_the_page_and_the_422_name_the_same_bounds(client, stub_states):
    limits = await page_limits(client)
    cap = limits["max_tokens"]["max"]
    assert cap == 2048  # PLAYGROUND_MAX_TOKENS's default
    assert limits["prompt"]["max_length"] == 16_000
    assert limits["sae_top_k"] == {"min": 1, "max": 128}
    assert limits["top_p"] == {"min": 0.0, "min_exclusive": True, "max": 1.0}
    for value in (cap + 1, 3000, 100_000, 10**12):
        response = await client.post(RUN, json={"prompt": "hi", "max_tokens": value})
        assert response.status_code == 422, value
        assert response.json()["error"]["message"] == f"max_tokens: at most {cap}", value
    long_prompt = "x" * (limits["prompt"]["max_length"] + 1)
    both = await client.post(RUN, json={"prompt": long_prompt, "max_tokens": 100_000})
    error = both.json()["error"]
    assert both.status_code == 422 and len(error["details"]) == 2
    assert "prompt: at most 16000 characters" in error["message"]
    assert f"max_tokens: at most {cap}" in error["message"]
    assert stub_states["engine"].calls == []  # nothing reached the engine


@pytest.mark.parametrize("prompt", [" ", "   \n\t  ", "\u00a0\u2003"])
async def test_a_whitespace_prompt_is_refused(client, db, prompt):
    response = await client.post(RUN, json={"prompt": prompt, "request_id": "blank-prompt"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith("prompt:") and "whitespace" in error["message"]
    stored = await db.fetchval(
        "SELECT count(*) FROM activation_run_index WHERE request_id = 'blank-prompt'"
    )
    assert stored == 0

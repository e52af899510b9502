"""The timeline budget (backend/activations/budget.py) on the real backend, real Postgres and the
stub engine: a prompt's UTF-8 bytes bound its tokens cheaply; only when that bound is over a cap
does the backend ask the engine (POST /tokenize) for the exact count, and only an exact count
(+ max_tokens) over a cap is refused (422 ``timeline_too_large``), before the id's claim and any
/generate. A failed count is the engine's 502/503, naming it, and leaves nothing either."""

from __future__ import annotations

import httpx
import pytest

from backend.activations import budget
from backend.app import create_app
from common import sse
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

RUN = "/playground/activations/run"
CAP = 8 << 20  # the default PLAYGROUND_MAX_TIMELINE_BYTES
# An ordinary long prompt (9,000 characters) at the defaults (max_tokens 128, sae_top_k 20).
LONG = "The quick brown fox jumps over the lazy dog. " * 200
STEER = [{"feature_id": 7, "strength": 40.0}]


async def stored(db, request_id: str) -> dict[str, int]:
    return {
        table: await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE request_id = $1",
            request_id,
        )
        for table in ("activation_run_index", "activation_run_previews", "activation_run_owners")
    }


NOTHING = {"activation_run_index": 0, "activation_run_previews": 0, "activation_run_owners": 0}


def test_the_cheap_bound_alone_would_refuse_the_long_prompt():
    """The defect: 9,000 bytes + 64 + 128 positions x (209 + 20 x 76) bytes > 8 MiB."""
    assert len(LONG) == 9000
    positions = budget.max_positions(LONG, 128)
    assert budget.stored_bytes_bound(positions, 20) > CAP
    refusal = budget.over_budget(positions, 20, max_features=1_000_000, max_bytes=CAP, exact=False)
    assert refusal is not None and refusal.code == "timeline_too_large"
    exact = len(stubs.prompt_token_ids(LONG, True)) + 128
    assert budget.over_budget(exact, 20, max_features=1_000_000, max_bytes=CAP, exact=True) is None


async def test_a_short_prompt_is_not_tokenized(client, stub_states):
    response = await client.post(RUN, json={"prompt": "hello there"})
    assert response.status_code == 200, response.text
    assert stub_states["engine"].tokenize_calls == []  # the cheap bound sufficed


@pytest.mark.parametrize("stream", [False, True])
async def test_a_long_prompt_whose_exact_count_fits_runs(client, db, stub_states, stream):
    request_id = f"long-fits-{stream}"
    headers = {"accept": sse.MEDIA_TYPE} if stream else {}
    response = await client.post(
        RUN, json={"prompt": LONG, "request_id": request_id}, headers=headers
    )
    assert response.status_code == 200, response.text
    if stream:
        assert "event: done" in response.text, response.text[-500:]
    # The engine was asked for the exact count of what /generate feeds, then generated.
    assert stub_states["engine"].tokenize_calls == [
        {"text": LONG, "chat": True, "parse_special_tokens": False}
    ]
    assert [c["prompt"] for c in stub_states["engine"].calls] == [LONG]
    run = (await client.get(f"/playground/activations/{request_id}")).json()
    assert run["status"] == "ok" and run["preview"]["feature_timeline"]
    assert (await stored(db, request_id))["activation_run_index"] == 1


@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({}, {}),
        ({}, {"accept": sse.MEDIA_TYPE}),
        ({"steer": STEER, "compare": True}, {}),
        ({"steer": STEER}, {"accept": sse.MEDIA_TYPE}),
    ],
)
async def test_a_prompt_truly_over_the_cap_is_422_and_leaves_nothing(
    client, db, stub_states, extra, headers
):
    # Exact: 58 prompt tokens + 2048 = 2106 positions x (209 + 128 x 76) bytes > 8 MiB.
    request_id = f"truly-over-{len(extra)}-{bool(headers)}"
    body = {"prompt": LONG, "max_tokens": 2048, "sae_top_k": 128, "request_id": request_id}
    response = await client.post(RUN, json={**body, **extra}, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "timeline_too_large"
    exact = len(stubs.prompt_token_ids(LONG, True)) + 2048
    assert f"the timeline of {exact} positions" in error["message"]  # the exact count
    assert len(stub_states["engine"].tokenize_calls) == 1
    assert stub_states["engine"].calls == []  # no /generate
    assert stub_states["sae"].calls == []
    assert await stored(db, request_id) == NOTHING


async def test_raw_mode_is_counted_as_raw(client, stub_states):
    body = {"prompt": LONG, "chat": False, "parse_special_tokens": True}
    response = await client.post(RUN, json=body)
    assert response.status_code == 200, response.text
    assert stub_states["engine"].tokenize_calls == [
        {"text": LONG, "chat": False, "parse_special_tokens": True}
    ]


async def test_without_activations_nothing_is_counted(client, stub_states):
    body = {"prompt": LONG, "max_tokens": 2048, "sae_top_k": 128, "collect_activations": False}
    response = await client.post(RUN, json=body)
    assert response.status_code == 200, response.text
    assert stub_states["engine"].tokenize_calls == []


async def test_engine_down_during_the_count_is_503_naming_it(db_uri, db, stub_urls, dead_url):
    settings = backend_settings(db_uri, {**stub_urls, "engine": dead_url})
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            response = await http.post(RUN, json={"prompt": LONG, "request_id": "count-down"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_unavailable", "engine")
    assert await stored(db, "count-down") == NOTHING


@pytest.mark.parametrize("mode", ["error500", "garbage", "wrong_shape"])
async def test_a_failed_count_is_502_naming_the_engine(client, db, stub_states, mode):
    stub_states["engine"].mode = mode
    request_id = f"count-{mode}"
    response = await client.post(RUN, json={"prompt": LONG, "request_id": request_id})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_error", "engine")
    assert len(stub_states["engine"].tokenize_calls) == 1
    assert stub_states["engine"].calls == []
    assert await stored(db, request_id) == NOTHING

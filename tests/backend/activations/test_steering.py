"""Steered runs through the backend (docs/steering.md): stub engine and SAE service (their
steering held to the real models, tests/backend/steer_stubs.py), real Postgres."""

from __future__ import annotations

import asyncio
import base64

import httpx
import orjson
import pytest

from backend.activations.protocol import ActivationRunResponse
from backend.app import create_app
from common import sse
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

RUN = "/playground/activations/run"
PROMPT = "Tell me about the sea."
STEER = [{"feature_id": 7, "strength": 40.0}, {"feature_id": 3, "strength": -12.5}]


def engine_calls(stub_states) -> list[dict]:
    return [c for c in stub_states["engine"].calls if "prompt" in c]


async def stored(db, request_id: str) -> dict:
    """What the database holds under ``request_id``: index, owner and pair rows."""
    return {
        "index": await db.fetchval(
            "SELECT count(*) FROM activation_run_index WHERE request_id = $1", request_id
        ),
        "owner": await db.fetchval(
            "SELECT count(*) FROM activation_run_owners WHERE request_id = $1", request_id
        ),
        "pair": await db.fetchval(
            "SELECT count(*) FROM activation_run_pairs WHERE request_id = $1", request_id
        ),
    }


NOTHING = {"index": 0, "owner": 0, "pair": 0}


def brute_read_back(run: dict, feature_id: int) -> dict:
    """The feature over the run's output positions, from its timeline as the GET answers it."""
    outputs = [e for e in run["preview"]["feature_timeline"] if e["segment"] == "output"]
    acts = [
        f["activation"] for e in outputs for f in e["features"] if f["feature_id"] == feature_id
    ]
    return {
        "max": max(acts, default=0.0),
        "mean": sum(acts) / len(outputs) if outputs and acts else 0.0,
        "hits": len(acts),
    }


# -- bad input: 422, nothing stored ----------------------------------------------------------


@pytest.mark.parametrize(
    ("steer", "code"),
    [
        ([{"feature_id": i, "strength": 1.0} for i in range(9)], "validation_error"),  # wire cap
        ([{"feature_id": 1, "strength": 300.5}], "strength_over_cap"),  # settings cap
        ([{"feature_id": 1, "strength": -1001.0}], "validation_error"),  # wire cap
        (
            [{"feature_id": 1, "strength": 1.0}, {"feature_id": 1, "strength": 2.0}],
            "duplicate_steer",
        ),
        ([{"feature_id": -1, "strength": 1.0}], "validation_error"),
        ([{"feature_id": 1, "strength": 1.0, "extra": 1}], "validation_error"),
    ],
)
async def test_bad_steer_is_422_and_stores_nothing(client, db, stub_states, steer, code):
    request_id = f"bad-steer-{code}-{len(steer)}"
    body = {"prompt": PROMPT, "steer": steer, "compare": True, "request_id": request_id}
    response = await client.post(RUN, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert await stored(db, request_id) == NOTHING
    assert stub_states["engine"].calls == [] and stub_states["sae"].calls == []


async def test_nan_strength_and_compare_without_steer_are_422(client, stub_states):
    raw = b'{"prompt": "x", "steer": [{"feature_id": 1, "strength": NaN}]}'
    response = await client.post(RUN, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    response = await client.post(RUN, json={"prompt": "x", "compare": True})
    assert response.status_code == 422 and "compare needs steer" in response.text
    assert stub_states["engine"].calls == []


async def test_a_tighter_feature_cap_from_settings(db_uri, stub_urls, stub_states):
    settings = backend_settings(db_uri, stub_urls, playground_max_steer_features=2)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            steer = [{"feature_id": i, "strength": 1.0} for i in range(3)]
            response = await http.post(RUN, json={"prompt": "x", "steer": steer})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_steer"
    assert stub_states["engine"].calls == []


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_feature_is_422_nothing_stored(client, db, stub_states, stream):
    request_id = f"unknown-feature-{stream}"
    body = {
        "prompt": PROMPT,
        "steer": [{"feature_id": stubs.D_SAE + 5, "strength": 10.0}],
        "compare": True,
        "request_id": request_id,
    }
    headers = {"accept": sse.MEDIA_TYPE} if stream else {}
    owners_before = await db.fetchval("SELECT count(*) FROM activation_run_owners")
    response = await client.post(RUN, json=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_rejected", "sae")
    assert "out of range" in error["message"] or "d_sae" in error["message"]
    assert await stored(db, request_id) == NOTHING
    assert engine_calls(stub_states) == []  # no generation for a refused steer
    # Nothing was left behind under another id either (the default's claim went too).
    assert await db.fetchval("SELECT count(*) FROM activation_run_owners") == owners_before


@pytest.mark.parametrize("stream", [False, True])
async def test_an_engine_that_cannot_steer_is_422_nothing_stored(client, db, stub_states, stream):
    stub_states["engine"].mode = "no_steer"
    owners_before = await db.fetchval("SELECT count(*) FROM activation_run_owners")
    request_id = f"no-steer-{stream}"
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": request_id}
    headers = {"accept": sse.MEDIA_TYPE} if stream else {}
    response = await client.post(RUN, json=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("steering_unavailable", "engine")
    assert await stored(db, request_id) == NOTHING
    # The default's claim went too.
    assert await db.fetchval("SELECT count(*) FROM activation_run_owners") == owners_before


# -- the pair ------------------------------------------------------------------------------


async def test_a_pair_is_stored_and_linked_both_ways(client, db, stub_states):
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": "pair-1", "seed": 5}
    response = await client.post(RUN, json=body)
    assert response.status_code == 200, response.text
    steered = response.json()
    ActivationRunResponse.model_validate(steered)
    assert steered["request_id"] == "pair-1" and steered["owner_token"]
    assert steered["pair"]["role"] == "steered"
    default_id = steered["pair"]["request_id"]
    assert default_id and default_id != "pair-1"

    # The engine: the same prompt, settings and seed; the steered call carries the rows.
    calls = {c["request_id"]: c for c in engine_calls(stub_states)}
    assert set(calls) == {"pair-1", default_id}
    plain, steered_call = calls[default_id], calls["pair-1"]
    assert "steer" not in plain
    assert {k: v for k, v in steered_call.items() if k not in ("steer", "request_id")} == {
        k: v for k, v in plain.items() if k != "request_id"
    }
    assert plain["seed"] == 5
    assert [(s["layer"], s["scale"]) for s in steered_call["steer"]] == [
        (stubs.SAE_LAYER, 40.0),
        (stubs.SAE_LAYER, -12.5),
    ]
    row = base64.b64decode(steered_call["steer"][0]["vector_b64"])
    assert len(row) == 4 * 4096
    # The stub's steered answer differs from its default, as steering should make it.
    assert (
        steered["output"]["token_ids"]
        != (await client.get(f"/playground/activations/{default_id}")).json()["output"]["token_ids"]
    )

    # Both stored, linked both ways; the spec on the steered run only.
    links = {
        r["request_id"]: dict(r)
        for r in await db.fetch(
            "SELECT request_id, role, pair_request_id, steering IS NOT NULL AS spec "
            "FROM activation_run_pairs WHERE request_id = ANY($1)",
            ["pair-1", default_id],
        )
    }
    assert links == {
        "pair-1": {"request_id": "pair-1", "role": "steered", "pair_request_id": default_id,
                   "spec": True},
        default_id: {"request_id": default_id, "role": "default", "pair_request_id": "pair-1",
                     "spec": False},
    }  # fmt: skip
    features = await db.fetchval(
        "SELECT count(*) FROM activation_run_features WHERE request_id = ANY($1)",
        ["pair-1", default_id],
    )
    assert features == 2  # each run with its features

    # Reads answer the pair from both sides, with the same steering spec.
    got_steered = (await client.get("/playground/activations/pair-1")).json()
    got_default = (await client.get(f"/playground/activations/{default_id}")).json()
    ActivationRunResponse.model_validate(got_default)
    assert got_steered["pair"] == {"request_id": default_id, "role": "steered"}
    assert got_default["pair"] == {"request_id": "pair-1", "role": "default"}
    assert got_steered["steering"] == got_default["steering"] == steered["steering"]
    assert steered["steering"]["seed"] == 5


async def test_read_back_figures_equal_brute_force_over_stored_timelines(client):
    body = {"prompt": "Count the waves.", "steer": [{"feature_id": f, "strength": 3.0}
            for f in range(0, 40, 5)], "compare": True, "sae_top_k": 12}  # fmt: skip
    answer = (await client.post(RUN, json=body)).json()
    default_id = answer["pair"]["request_id"]
    steered_run = (await client.get(f"/playground/activations/{answer['request_id']}")).json()
    default_run = (await client.get(f"/playground/activations/{default_id}")).json()
    figures = answer["steering"]["features"]
    assert [f["feature_id"] for f in figures] == list(range(0, 40, 5))
    assert any(f["steered"]["hits"] for f in figures)  # the check is not vacuous
    for figure in figures:
        fid = figure["feature_id"]
        for side, run in (("steered", steered_run), ("default", default_run)):
            want = brute_read_back(run, fid)
            got = figure[side]
            assert got["hits"] == want["hits"], (fid, side)
            assert got["max"] == pytest.approx(want["max"]), (fid, side)
            assert got["mean"] == pytest.approx(want["mean"]), (fid, side)
        assert figure["norm"] > 0 and figure["strength"] == 3.0


async def test_steer_without_compare_is_one_steered_run(client, db, stub_states):
    body = {"prompt": PROMPT, "steer": STEER[:1], "request_id": "lone-steer"}
    answer = (await client.post(RUN, json=body)).json()
    assert answer["pair"] is None
    figure = answer["steering"]["features"][0]
    assert figure["default"] is None and figure["steered"] is not None
    assert len(engine_calls(stub_states)) == 1
    got = (await client.get("/playground/activations/lone-steer")).json()
    assert got["steering"] == answer["steering"] and got["pair"] is None


async def test_a_plain_run_has_no_pair(client, stub_states):
    answer = (await client.post(RUN, json={"prompt": PROMPT})).json()
    assert answer["steering"] is None and answer["pair"] is None
    assert "steer" not in engine_calls(stub_states)[0]  # the plain engine call is unchanged


# -- ownership -------------------------------------------------------------------------------


async def test_ownership_of_a_pair(client, db):
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": "owned-pair"}
    first = (await client.post(RUN, json=body)).json()
    token, default_id = first["owner_token"], first["pair"]["request_id"]
    # Nobody else may re-run the steered id (409, before anything), nor its default.
    for rid in ("owned-pair", default_id):
        refused = await client.post(RUN, json={**body, "request_id": rid})
        assert refused.status_code == 409, refused.text
        refused = await client.post(
            RUN, json={**body, "request_id": rid}, headers={"X-Run-Owner": "not-the-token"}
        )
        assert refused.status_code == 409
    # The owner re-runs the pair: the same default id is reused, no token handed out again.
    again = await client.post(RUN, json=body, headers={"X-Run-Owner": token})
    assert again.status_code == 200, again.text
    assert again.json()["pair"]["request_id"] == default_id
    assert again.json()["owner_token"] is None
    # The one token owns both runs: the owner deletes the default, the link goes with it.
    gone = await client.delete(
        f"/playground/activations/{default_id}", headers={"X-Run-Owner": "not-the-token"}
    )
    assert gone.status_code == 409
    gone = await client.delete(
        f"/playground/activations/{default_id}", headers={"X-Run-Owner": token}
    )
    assert gone.status_code == 204
    got = (await client.get("/playground/activations/owned-pair")).json()
    assert got["pair"] is None and got["steering"] is not None
    assert (
        await db.fetchval(
            "SELECT pair_request_id FROM activation_run_pairs WHERE request_id = 'owned-pair'"
        )
        is None
    )


async def no_leases(db) -> bool:
    """Whether every work lease is given back (a request's goes after its answer is sent)."""
    for _ in range(100):
        if await db.fetchval("SELECT count(*) FROM work_leases") == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_pair_counts_as_two_runs_against_the_limits(db_uri, stub_urls, db):
    settings = backend_settings(db_uri, stub_urls, playground_gpu_in_flight_per_client=1)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert await no_leases(db)  # earlier tests' requests (same client) are done
            plain = await http.post(RUN, json={"prompt": "x", "steer": STEER})
            assert plain.status_code == 200, plain.text  # one run: one slot
            assert await no_leases(db)
            pair = await http.post(RUN, json={"prompt": "x", "steer": STEER, "compare": True})
            assert pair.status_code == 429, pair.text  # two runs: over the client's one slot
            assert pair.json()["error"]["code"] == "rate_limited"
            assert "in flight" in pair.json()["error"]["message"]
            assert await no_leases(db)  # the first admission given back too


# -- streamed --------------------------------------------------------------------------------


async def read_events(client, body) -> list[tuple[str, dict]]:
    events = []
    async with client.stream("POST", RUN, json=body, headers={"accept": sse.MEDIA_TYPE}) as r:
        assert r.status_code == 200, await r.aread()
        async for event in sse.aparse(r.aiter_lines()):
            events.append(event)
    return events


async def test_a_streamed_pair_interleaves_both_runs_then_two_dones(client, db):
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": "stream-pair"}
    events = await read_events(client, body)
    roles = {data["role"] for _, data in events}
    assert roles == {"steered", "default"}
    for role in ("steered", "default"):
        names = [name for name, data in events if data["role"] == role]
        assert names[0] == "started" and names[-1] == "done" and "token" in names
    assert [name for name, _ in events].count("done") == 2
    last_name, last = events[-1]
    assert (last_name, last["role"], last["request_id"]) == ("done", "steered", "stream-pair")
    default_done = next(d for n, d in events if n == "done" and d["role"] == "default")
    assert default_done["pair"] == {"request_id": "stream-pair", "role": "default"}
    assert last["pair"] == {"request_id": default_done["request_id"], "role": "steered"}
    # Both started events carry the one owner token; the streamed tokens are the stored ones.
    tokens = {d["owner_token"] for n, d in events if n == "started"}
    assert len(tokens) == 1 and None not in tokens
    for done in (last, default_done):
        streamed = [d["token_id"] for n, d in events if n == "token" and d["role"] == done["role"]]
        got = (await client.get(f"/playground/activations/{done['request_id']}")).json()
        assert got["output"]["token_ids"] == streamed
        assert got["steering"] == last["steering"]
        ActivationRunResponse.model_validate(got)
    # The figures streamed equal those over the stored timelines.
    default_run = (await client.get(f"/playground/activations/{default_done['request_id']}")).json()
    steered_run = (await client.get("/playground/activations/stream-pair")).json()
    for figure in last["steering"]["features"]:
        assert (
            figure["steered"]["hits"] == brute_read_back(steered_run, figure["feature_id"])["hits"]
        )
        assert (
            figure["default"]["hits"] == brute_read_back(default_run, figure["feature_id"])["hits"]
        )


async def test_an_upstream_failure_mid_pair_records_the_steered_run(client, db, stub_states):
    stub_states["sae"].mode = "error500"  # /steering_vectors fails: 502, the run recorded
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": "pair-502"}
    response = await client.post(RUN, json=body)
    assert response.status_code == 502, response.text
    assert response.headers.get("x-run-owner")  # the new run's token, as for any run
    row = await db.fetchrow(
        "SELECT status, error_upstream FROM activation_run_index WHERE request_id = 'pair-502'"
    )
    assert (row["status"], row["error_upstream"]) == ("failed", "sae")
    spec = await db.fetchval(
        "SELECT steering FROM activation_run_pairs WHERE request_id = 'pair-502'"
    )
    assert [f["feature_id"] for f in orjson.loads(spec)["features"]] == [7, 3]
    # The default was never generated: its claim is gone, no row of it anywhere.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM activation_run_pairs WHERE pair_request_id = 'pair-502'"
        )
        == 0
    )


async def test_re_runs_keep_the_links_true(client):
    body = {"prompt": PROMPT, "steer": STEER, "compare": True, "request_id": "rerun-pair"}
    first = (await client.post(RUN, json=body)).json()
    token, default_id = first["owner_token"], first["pair"]["request_id"]
    owner = {"X-Run-Owner": token}
    # The default's id re-run as a plain run: out of the pair, and the steered run lets go.
    plain = await client.post(RUN, json={"prompt": "x", "request_id": default_id}, headers=owner)
    assert plain.status_code == 200, plain.text
    assert plain.json()["pair"] is None and plain.json()["steering"] is None
    got = (await client.get(f"/playground/activations/{default_id}")).json()
    assert got["pair"] is None and got["steering"] is None
    steered = (await client.get("/playground/activations/rerun-pair")).json()
    assert steered["pair"] is None and steered["steering"] is not None
    # The steered id re-run plain: its spec goes too.
    again = await client.post(RUN, json={"prompt": "x", "request_id": "rerun-pair"}, headers=owner)
    assert again.status_code == 200
    got = (await client.get("/playground/activations/rerun-pair")).json()
    assert got["pair"] is None and got["steering"] is None


@pytest.mark.parametrize("mode", ["ok", "no_steer", "error500"])
async def test_the_steering_stubs_answer_on_contract(stub_urls, stub_states, mode):
    """The stubs' steering routes, held to the real models (tests/backend/steer_stubs.py)."""
    for state in stub_states.values():
        state.mode = mode
    rows = {"sae_id": stubs.SAE_ID, "layer": stubs.SAE_LAYER, "feature_ids": [3, 7]}
    async with httpx.AsyncClient(timeout=30) as http:
        vectors = await http.post(stub_urls["sae"] + "/steering_vectors", json=rows)
        too_far = await http.post(
            stub_urls["sae"] + "/steering_vectors", json={**rows, "feature_ids": [stubs.D_SAE]}
        )
        steer = [{"layer": 16, "vector_b64": v["vector_b64"], "scale": 2.0}
                 for v in vectors.json().get("vectors", [])]  # fmt: skip
        generate = {"prompt": "hi", "max_tokens": 4, "temperature": 0.0, "top_p": 1.0,
                    "top_k": 0, "steer": steer or None}  # fmt: skip
        steered = await http.post(stub_urls["engine"] + "/generate", json=generate)
        streamed = await http.post(
            stub_urls["engine"] + "/generate", json={**generate, "stream": True}
        )
    assert [d for state in stub_states.values() for d in state.drifts] == []
    if mode == "ok":
        assert [r.status_code for r in (vectors, too_far, steered, streamed)] == [
            200,
            422,
            200,
            200,
        ]
        names = [name for name, _ in sse.parse(streamed.text.splitlines())]
        assert names[0] == "prompt" and names[-1] == "done" and "token" in names
    if mode == "no_steer":
        assert steered.status_code == 422
        assert steered.json()["error"]["code"] == "steering_unavailable"

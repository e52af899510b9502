"""The /playground/activations routes end to end over HTTP: stub upstreams, real Postgres."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from backend.activations.protocol import (
    ActivationRunResponse,
    HealthResponse,
    RowsResponse,
    RunsPage,
    SummaryResponse,
    TopFeaturesResponse,
)
from backend.app import create_app
from bench.run_seed_sql import brute_counts
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

PROMPT = "Why is the sky blue?"


async def run(client, owner: str | None = None, **body):
    headers = {"X-Run-Owner": owner} if owner else {}
    response = await client.post(
        "/playground/activations/run", json={"prompt": PROMPT, **body}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- brute force references ----------------------------------------------------------------


def brute_rows(
    timeline,
    output_start,
    *,
    feature_id=None,
    token_start=None,
    token_end=None,
    rank_max=None,
    segment="all",
):
    out = []
    for entry in timeline:
        pos = entry["position"]
        if token_start is not None and pos < token_start:
            continue
        if token_end is not None and pos >= token_end:
            continue
        if segment != "all" and entry["segment"] != segment:
            continue
        for rank, feat in enumerate(entry["features"], start=1):
            if feature_id is not None and feat["feature_id"] != feature_id:
                continue
            if rank_max is not None and rank > rank_max:
                continue
            out.append(
                {
                    "step": pos - output_start if entry["segment"] == "output" else None,
                    "token_position": pos,
                    "feature_id": feat["feature_id"],
                    "activation_value": feat["activation"],
                    "rank": rank,
                    "token_id": entry["token_id"],
                    "token": entry["token"],
                }
            )
    return out


def brute_top(timeline, *, segment="all", include_special=False):
    stats = {}
    for entry in timeline:
        if segment != "all" and entry["segment"] != segment:
            continue
        if entry["special"] and not include_special:
            continue
        for feat in entry["features"]:
            s = stats.setdefault(feat["feature_id"], {"acts": [], "best": None})
            s["acts"].append(feat["activation"])
            if s["best"] is None or feat["activation"] > s["best"][0]:
                s["best"] = (feat["activation"], entry["position"], entry["token_id"])
    result = [
        {
            "feature_id": fid,
            "max_activation": s["best"][0],
            "hits": len(s["acts"]),
            "mean_activation": sum(s["acts"]) / len(s["acts"]),
            "max_position": s["best"][1],
            "max_token_id": s["best"][2],
        }
        for fid, s in stats.items()
    ]
    result.sort(key=lambda f: (-f["max_activation"], -f["hits"], f["feature_id"]))
    return result


def assert_features(actual, expected):
    """Exact ints and order; floats to 1e-9 (numpy sums in another order than Python)."""
    assert [f["feature_id"] for f in actual] == [f["feature_id"] for f in expected]
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, got, want)


# -- run and read back -----------------------------------------------------------------------


async def test_run_response_shape_and_upstream_calls(client, stub_states, db):
    body = await run(client, request_id="shape-1", max_tokens=5, seed=3)
    parsed = ActivationRunResponse.model_validate(body)
    assert parsed.request_id == "shape-1"
    assert parsed.status == "ok"
    assert parsed.model_id == stubs.DEFAULT_MODEL
    prompt_ids = stubs.prompt_token_ids(PROMPT, True)
    out_ids = stubs.output_token_ids(PROMPT, 5)
    assert body["output"] == {
        "text": " ".join(f"t{t}" for t in out_ids),
        "token_ids": out_ids,
        "prompt_token_ids": prompt_ids,
        "finish_reason": "length" if len(out_ids) == 5 else "stop",
    }
    assert body["events"] == [] and body["actions"] == []
    assert set(body["timings_ms"]) == {"engine", "sae", "db", "total"}
    assert all(v >= 0 for v in body["timings_ms"].values())

    # The engine got the generation params; the SAE got the FULL sequence + output_start.
    gen_call = stub_states["engine"].calls[-1]
    assert gen_call["max_tokens"] == 5 and gen_call["seed"] == 3 and gen_call["chat"] is True
    assert gen_call["model_id"] == stubs.DEFAULT_MODEL
    sae_call = stub_states["sae"].calls[-1]
    assert sae_call["token_ids"] == prompt_ids + out_ids
    assert sae_call["output_start"] == len(prompt_ids)
    assert (sae_call["sae_id"], sae_call["layer"], sae_call["top_k"]) == (
        "llama_scope_lxr_8x",
        16,
        20,
    )

    preview = body["preview"]
    expected_timeline = stubs.timeline(prompt_ids + out_ids, 20, len(prompt_ids))
    assert preview["feature_timeline"] == expected_timeline
    assert preview["row_count"] == sum(len(e["features"]) for e in expected_timeline)
    assert_features(preview["top_features"], brute_top(expected_timeline)[:20])

    # Both rows written.
    index = await db.fetchrow("SELECT * FROM activation_run_index WHERE request_id='shape-1'")
    assert index["status"] == "ok" and index["has_preview"]
    assert index["output_tokens"] == len(out_ids) and index["prompt_tokens"] == len(prompt_ids)
    stored = await db.fetchrow("SELECT * FROM activation_run_previews WHERE request_id='shape-1'")
    assert list(stored["output_token_ids"]) == out_ids
    assert list(stored["prompt_token_ids"]) == prompt_ids


async def test_get_run_matches_run(client):
    body = await run(client, request_id="get-1", max_tokens=4)
    got = await client.get("/playground/activations/get-1")
    assert got.status_code == 200
    stored = got.json()
    ActivationRunResponse.model_validate(stored)
    for key in ("request_id", "permalink", "model_id", "prompt", "output", "preview", "status"):
        assert stored[key] == body[key], key
    assert stored["created_at"][:19] == body["created_at"][:19]
    # One meaning per field: the read-back carries the run's own stored times, the numbers its
    # POST answered; the write's own time is known only to the POST.
    for key in ("engine", "sae", "total"):
        assert stored["timings_ms"][key] == body["timings_ms"][key], key
    assert body["timings_ms"]["db"] is not None and stored["timings_ms"]["db"] is None
    assert body["permalink"].endswith("/playground/activations?run=get-1")
    assert body["permalink"].startswith("http://127.0.0.1:")


async def test_every_route_answers_its_response_model(client, long_run, stub_states):
    """Handlers skip FastAPI's response validation (see api_router), so check each answer."""
    rid = "long-1"  # the long_run fixture's
    checks = [
        (f"/playground/activations/{rid}", ActivationRunResponse),
        (f"/playground/activations/{rid}/rows", RowsResponse),
        (f"/playground/activations/{rid}/top-features", TopFeaturesResponse),
        ("/playground/activations/runs?limit=2", RunsPage),
        ("/playground/activations/summary", SummaryResponse),
        ("/playground/activations/health", HealthResponse),
    ]
    for path, model in checks:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        model.model_validate(response.json(), strict=False)
    stub_states["engine"].mode = "error500"
    response = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "model-failed"}
    )
    assert response.status_code == 502
    stub_states["engine"].mode = "ok"
    failed = await client.get("/playground/activations/model-failed")
    assert ActivationRunResponse.model_validate(failed.json()).status == "failed"


async def test_unknown_model_means_default_and_sae_choice(client, stub_states):
    body = await run(
        client, model_id="something/else", sae_id="other_sae", sae_layer=3, sae_top_k=5
    )
    assert stub_states["engine"].calls[-1]["model_id"] == stubs.DEFAULT_MODEL
    assert body["model_id"] == stubs.DEFAULT_MODEL
    sae_call = stub_states["sae"].calls[-1]
    assert (sae_call["sae_id"], sae_call["layer"], sae_call["top_k"]) == ("other_sae", 3, 5)
    assert body["preview"]["sae_id"] == "other_sae"
    assert body["preview"]["sae_layer"] == 3 and body["preview"]["sae_top_k"] == 5
    assert all(len(e["features"]) <= 5 for e in body["preview"]["feature_timeline"])
    body = await run(client, model_id="")
    assert stub_states["engine"].calls[-1]["model_id"] == stubs.DEFAULT_MODEL


@pytest.mark.parametrize("flag", ["collect_activations", "inline_sae"])
async def test_no_activations_skips_sae(client, stub_states, flag):
    request_id = f"noact-{flag}"
    body = await run(client, request_id=request_id, **{flag: False})
    assert body["preview"] is None
    assert stub_states["sae"].calls == []
    got = (await client.get(f"/playground/activations/{request_id}")).json()
    assert got["preview"] is None and got["output"] == body["output"]
    rows = (await client.get(f"/playground/activations/{request_id}/rows")).json()
    assert rows["total"] == 0 and rows["rows"] == []
    top = (await client.get(f"/playground/activations/{request_id}/top-features")).json()
    assert top["top_features"] == []


async def test_rerun_same_id_replaces_both(client, db):
    first = await run(client, request_id="rerun-1", prompt="first prompt")
    second = await run(
        client,
        owner=first["owner_token"],
        request_id="rerun-1",
        prompt="second prompt",
        collect_activations=False,
    )
    assert second["owner_token"] is None  # given once, by the answer that created the run
    assert (
        await db.fetchval("SELECT count(*) FROM activation_run_index WHERE request_id='rerun-1'")
        == 1
    )
    row = await db.fetchrow(
        "SELECT i.prompt_preview, i.has_preview, p.prompt, p.sae_id FROM activation_run_index i "
        "JOIN activation_run_previews p USING (request_id) WHERE request_id='rerun-1'"
    )
    assert row["prompt_preview"] == row["prompt"] == "second prompt"
    assert row["has_preview"] is False and row["sae_id"] is None
    got = (await client.get("/playground/activations/rerun-1")).json()
    assert got["output"] == second["output"] and got["preview"] is None


# -- rows and top-features --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def long_run(backend_url):
    import httpx

    async with httpx.AsyncClient(base_url=backend_url, timeout=30) as http:
        response = await http.post(
            "/playground/activations/run",
            json={
                "prompt": "Tell me a long story about a lighthouse keeper.",
                "request_id": "long-1",
                "max_tokens": 10,
            },
        )
    assert response.status_code == 200
    body = response.json()
    return body["preview"]["feature_timeline"], len(body["output"]["prompt_token_ids"])


ROW_FILTERS = [
    {},
    {"feature_id": 7},
    {"token_start": 3, "token_end": 20},
    {"token_start": 50},
    {"token_end": 2},
    {"rank_max": 1},
    {"rank_max": 3, "segment": "output"},
    {"segment": "prompt"},
    {"segment": "output", "feature_id": 11},
    {"token_start": 5, "token_end": 5},
]


@pytest.mark.parametrize(
    "flt", ROW_FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "none"
)
async def test_rows_filters_match_brute_force(client, long_run, flt):
    timeline, output_start = long_run
    expected = brute_rows(timeline, output_start, **flt)
    response = await client.get(
        "/playground/activations/long-1/rows", params={**flt, "limit": 1000}
    )
    assert response.status_code == 200
    body = response.json()
    RowsResponse.model_validate(body)
    assert body["total"] == len(expected)
    assert body["rows"] == expected


async def test_rows_paging(client, long_run):
    timeline, output_start = long_run
    expected = brute_rows(timeline, output_start)
    assert len(expected) > 30
    pages = []
    for offset in range(0, len(expected) + 7, 7):
        body = (
            await client.get(
                "/playground/activations/long-1/rows", params={"limit": 7, "offset": offset}
            )
        ).json()
        assert body["total"] == len(expected) and body["limit"] == 7
        pages.extend(body["rows"])
    assert pages == expected
    default = (await client.get("/playground/activations/long-1/rows")).json()
    assert default["limit"] == 200 and default["rows"] == expected[:200]


@pytest.mark.parametrize(
    ("segment", "include_special"),
    list(itertools.product(["all", "prompt", "output"], [False, True])),
)
async def test_top_features_match_brute_force(client, long_run, segment, include_special):
    timeline, _ = long_run
    expected = brute_top(timeline, segment=segment, include_special=include_special)
    assert expected, "the stub timeline should give features for every segment"
    response = await client.get(
        "/playground/activations/long-1/top-features",
        params={"segment": segment, "include_special": str(include_special).lower(), "limit": 1000},
    )
    assert response.status_code == 200
    body = response.json()
    TopFeaturesResponse.model_validate(body)
    assert_features(body["top_features"], expected)
    limited = (
        await client.get(
            "/playground/activations/long-1/top-features",
            params={
                "segment": segment,
                "limit": 3,
                "include_special": str(include_special).lower(),
            },
        )
    ).json()
    assert_features(limited["top_features"], expected[:3])


async def test_special_tokens_left_out_by_default(client, long_run):
    timeline, _ = long_run
    specials = {e["position"] for e in timeline if e["special"]}
    assert specials
    default = (
        await client.get("/playground/activations/long-1/top-features", params={"limit": 1000})
    ).json()["top_features"]
    assert not {f["max_position"] for f in default} & specials
    with_special = (
        await client.get(
            "/playground/activations/long-1/top-features", params={"include_special": "true"}
        )
    ).json()["top_features"]
    # The stub makes special tokens fire 100x, so they dominate when included.
    assert with_special[0]["max_position"] in specials


async def test_unknown_request_id_404(client):
    for path in ("", "/rows", "/top-features"):
        response = await client.get(f"/playground/activations/no-such-run{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_feature_deltas_501(client, long_run):
    response = await client.get("/playground/activations/long-1/feature-deltas")
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "not_implemented"


# -- listing, summary, health ------------------------------------------------------------------


async def test_runs_cursor_pagination_newest_first(client, db):
    ids = [f"page-{i:02d}" for i in range(12)]
    for request_id in ids:
        await run(client, request_id=request_id, collect_activations=False)
    # All rows of this module, in the order the API must give them.
    expected = [
        r["request_id"]
        for r in await db.fetch(
            "SELECT request_id FROM activation_run_index ORDER BY created_at DESC, request_id DESC"
        )
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/playground/activations/runs", params=params)
        assert response.status_code == 200
        page = RunsPage.model_validate(response.json())
        assert len(page.runs) <= 5
        seen.extend(r.request_id for r in page.runs)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert seen.index("page-11") < seen.index("page-00")


async def test_runs_status_filter_and_bad_cursor(client, stub_states):
    stub_states["engine"].mode = "error500"
    response = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "failed-listing"}
    )
    assert response.status_code == 502
    failed = (
        await client.get("/playground/activations/runs", params={"status": "failed", "limit": 200})
    ).json()["runs"]
    assert failed and all(r["status"] == "failed" for r in failed)
    mine = next(r for r in failed if r["request_id"] == "failed-listing")
    assert mine["error"]["upstream"] == "engine" and mine["has_preview"] is False
    bad = await client.get("/playground/activations/runs", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"


async def test_summary_counts(client, db, stub_states):
    # Its own runs, one of each status: the counts do not depend on what ran before.
    ok = await client.post("/playground/activations/run", json={"prompt": "summary ok"})
    assert ok.status_code == 200
    stub_states["engine"].mode = "error500"
    failed = await client.post("/playground/activations/run", json={"prompt": "summary failed"})
    assert failed.status_code == 502
    stub_states["engine"].mode = "ok"
    body = (await client.get("/playground/activations/summary")).json()
    SummaryResponse.model_validate(body)
    counts = await brute_counts(db)
    assert body["total_runs"] == counts["total_runs"] >= 2
    assert body["failed_runs"] == counts["failed_runs"] >= 1
    assert body["with_preview"] == counts["with_preview"] >= 1
    assert body["ok_runs"] == counts["total_runs"] - counts["failed_runs"]
    assert body["runs_last_24h"] == counts["total_runs"]
    assert sum(m["runs"] for m in body["models"]) == counts["total_runs"]


async def test_health_ok_and_degraded(client, stub_states):
    body = (await client.get("/playground/activations/health")).json()
    assert body["status"] == "ok"
    assert all(body[k]["ok"] for k in ("postgres", "engine", "sae"))
    stub_states["engine"].mode = "error500"
    response = await client.get("/playground/activations/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["engine"]["ok"] is False and body["engine"]["error"]
    assert body["postgres"]["ok"] and body["sae"]["ok"]
    assert (await client.get("/health")).json() == {"status": "ok"}


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": " \n\t"},
        {"prompt": "x" * 32_001},
        {"prompt": "x", "max_tokens": 0},
        {"prompt": "x", "max_tokens": 100_000},
        {"prompt": "x", "temperature": -0.1},
        {"prompt": "x", "temperature": 2.5},
        {"prompt": "x", "top_p": 0},
        {"prompt": "x", "top_p": 1.5},
        {"prompt": "x", "top_k": -1},
        {"prompt": "x", "sae_top_k": 0},
        {"prompt": "x", "sae_top_k": 1000},
        {"prompt": "x", "sae_layer": -1},
        {"prompt": "x", "sae_layer": 1000},
        {"prompt": "x", "request_id": "has space"},
        {"prompt": "x", "request_id": "runs"},
        {"prompt": "x", "request_id": "x" * 200},
        {"prompt": "x", "sae_id": "bad id!"},
        {"prompt": "x", "unknown_field": 1},
        {"prompt": 12},
    ],
)
async def test_run_rejects_bad_input(client, body, stub_states):
    response = await client.post("/playground/activations/run", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    # The deployment's bounds (prompt length, max_tokens) answer invalid_request with their
    # numbers (backend/activations/limits.py); the request model's own, validation_error.
    prompt = body.get("prompt")
    deployment = (isinstance(prompt, str) and len(prompt) > 16_000) or body.get(
        "max_tokens", 0
    ) > 2048
    assert error["code"] == ("invalid_request" if deployment else "validation_error")
    assert error["message"]
    assert stub_states["engine"].calls == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/playground/activations/long-1/rows", {"limit": 0}),
        ("/playground/activations/long-1/rows", {"limit": 1001}),
        ("/playground/activations/long-1/rows", {"offset": -1}),
        ("/playground/activations/long-1/rows", {"rank_max": 0}),
        ("/playground/activations/long-1/rows", {"feature_id": -1}),
        ("/playground/activations/long-1/rows", {"token_start": "a"}),
        ("/playground/activations/long-1/rows", {"segment": "middle"}),
        ("/playground/activations/long-1/top-features", {"limit": 0}),
        ("/playground/activations/long-1/top-features", {"include_special": "maybe"}),
        ("/playground/activations/runs", {"limit": 201}),
        ("/playground/activations/runs", {"status": "weird"}),
        ("/playground/activations/bad%20id/rows", {}),
    ],
)
async def test_query_bounds(client, long_run, path, params):
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_health_never_asks_an_upstream_more_than_once_per_interval(
    db_uri, stub_urls, stub_states
):
    """A page polling health keeps no GPU container awake: within the interval the engine's
    /health is asked once, however many times the backend's health is read."""
    settings = backend_settings(db_uri, stub_urls, playground_health_interval_s=3600)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            before = stub_states["engine"].health_calls
            bodies = await asyncio.gather(
                *(http.get("/playground/activations/health") for _ in range(5))
            )
            bodies += [await http.get("/playground/activations/health") for _ in range(5)]
            assert all(b.status_code == 200 for b in bodies)
            assert stub_states["engine"].health_calls - before == 1
            stub_states["engine"].mode = "down"  # not noticed until the interval passes
            last = (await http.get("/playground/activations/health")).json()
            assert last["engine"]["ok"] is True and last["engine"]["age_s"] >= 0
            assert last["postgres"]["ok"] is True


@pytest.mark.parametrize(
    "raw",
    [
        b'["0001-01-01T00:00:00+14:00", "x"]',
        b'["9999-12-31T23:59:59-14:00", "x"]',
        b'["2024-01-01T00:00:00+00:00", "x\\u0000y"]',
        b'["2024-01-01T00:00:00+00:00", 7]',
        b'["2024-01-01T00:00:00", "x"]',
        b'{"a": 1}',
        b"[1, 2, 3]",
        b"\xff\xfe",
    ],
)
async def test_malformed_or_out_of_range_cursors_are_422(client, raw):
    import base64

    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await client.get("/playground/activations/runs", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"

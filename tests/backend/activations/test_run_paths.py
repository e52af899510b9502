"""Run paths no other test takes: the engine rejecting the input (422 with a failed row), the
SAE answering the wrong number of positions, reads from the JSON timeline when the packed copy
is NULL, the configured caps, and /playground/features/analyze's defaults and faults."""

from __future__ import annotations

import httpx
import pytest

from backend.app import create_app
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

RUN = "/playground/activations/run"
ANALYZE = "/playground/features/analyze"
EXTRACT = "/playground/features/extract"
INDEX = (
    "SELECT status, error_code, error_upstream, has_preview FROM activation_run_index "
    "WHERE request_id = $1"
)


async def test_engine_rejection_is_422_with_a_failed_row(client, db, stub_states):
    stub_states["engine"].mode = "reject"
    response = await client.post(RUN, json={"prompt": "too long", "request_id": "engine-no"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_rejected", "engine")
    assert "prompt exceeds the context" in error["message"]  # the engine's own reason
    assert dict(await db.fetchrow(INDEX, "engine-no")) == {
        "status": "failed",
        "error_code": "upstream_rejected",
        "error_upstream": "engine",
        "has_preview": False,
    }
    assert stub_states["sae"].calls == []
    got = (await client.get("/playground/activations/engine-no")).json()
    assert got["status"] == "failed" and got["error"]["code"] == "upstream_rejected"
    assert got["output"] is None and got["preview"] is None


@pytest.mark.parametrize("mode", ["short", "long"])
async def test_sae_answering_the_wrong_number_of_positions(client, db, stub_states, mode):
    stub_states["sae"].mode = mode
    request_id = f"positions-{mode}"
    response = await client.post(RUN, json={"prompt": "count me", "request_id": request_id})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_error", "sae")
    assert "positions" in error["message"]
    row = await db.fetchrow(INDEX, request_id)
    assert (row["status"], row["error_upstream"], row["has_preview"]) == ("failed", "sae", False)
    # The proxy routes check the same.
    for path, body in (
        (EXTRACT, {"token_ids": [128000, 9906, 1917]}),
        (ANALYZE, {"token_ids": [128000, 9906, 1917], "feature_ids": [3]}),
    ):
        proxied = await client.post(path, json=body)
        assert proxied.status_code == 502, (path, proxied.text)
        assert "positions" in proxied.json()["error"]["message"]


async def test_reads_fall_back_to_the_json_timeline(client, db):
    """Rows written before the packed copy existed (timeline_packed NULL) read the same."""
    ok = await client.post(RUN, json={"prompt": "fallback " * 6, "request_id": "json-only"})
    assert ok.status_code == 200
    base = "/playground/activations/json-only"
    paths = [base, f"{base}/rows?limit=1000", f"{base}/top-features?limit=50",
             f"{base}/rows?segment=output&limit=1000"]  # fmt: skip
    before = [(await client.get(p)).json() for p in paths]
    assert before[0]["preview"]["feature_timeline"] and before[1]["rows"]
    cleared = await db.execute(
        "UPDATE activation_run_previews SET timeline_packed = NULL WHERE request_id = 'json-only'"
    )
    assert cleared == "UPDATE 1"
    after = [(await client.get(p)).json() for p in paths]
    assert after == before


async def test_configured_caps(db_uri, db, stub_urls, stub_states):
    settings = backend_settings(
        db_uri,
        stub_urls,
        playground_max_prompt_chars=10,
        playground_max_tokens=8,
        playground_max_timeline_features=1000,
        playground_max_timeline_bytes=22_000,
    )

    async def run(http: httpx.AsyncClient, **body) -> httpx.Response:
        return await http.post(RUN, json={"max_tokens": 8, "sae_top_k": 1, **body})

    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            # Cheap bound of "abc": 3 bytes + 64 template tokens + 8 = 75 positions; over a
            # cap, the engine's exact count decides: 13 tokens (stub chat template) + 8 = 21.
            refused = [
                (await run(http, prompt="x" * 11, request_id="cap-prompt"), "invalid_request"),
                (await run(http, prompt="abc", max_tokens=9, request_id="cap-tok"),
                 "invalid_request"),
                # 21 x 48 = 1008 features > 1000.
                (await run(http, prompt="abc", sae_top_k=48, request_id="cap-feat"),
                 "timeline_too_large"),
                # JSON and packed copy: 21 x (209 + 14 x 76) = 26733 bytes > 22000.
                (await run(http, prompt="abc", sae_top_k=14, max_tokens=8, request_id="cap-bytes",
                           collect_activations=True), "timeline_too_large"),
            ]  # fmt: skip
            for response, code in refused:
                assert response.status_code == 422, response.text
                assert response.json()["error"]["code"] == code
            assert stub_states["engine"].calls == [] and stub_states["sae"].calls == []
            ids = ["cap-prompt", "cap-tok", "cap-feat", "cap-bytes"]
            count = "SELECT count(*) FROM activation_run_index WHERE request_id = ANY($1)"
            assert await db.fetchval(count, ids) == 0
            # At the caps exactly: accepted.
            at_cap = await run(http, prompt="x" * 10, max_tokens=8, collect_activations=False)
            assert at_cap.status_code == 200, at_cap.text
            # Over the cheap bound (75 x (209 + 2 x 76) = 27075 bytes) but not exactly (21 x
            # 361 = 7581): accepted; 21 x 47 = 987 features, under, but its bytes are not.
            assert (await run(http, prompt="abc", sae_top_k=2)).status_code == 200
            assert (await run(http, prompt="abc", sae_top_k=47)).status_code == 422
            assert (await run(http, prompt="abc", sae_top_k=1)).status_code == 200
            # Without activations the timeline caps do not apply.
            no_sae = await run(http, prompt="abc", sae_top_k=48, collect_activations=False)
            assert no_sae.status_code == 200, no_sae.text


async def test_analyze_fills_in_the_default_sae(client, stub_states):
    response = await client.post(ANALYZE, json={"token_ids": [128000, 9906], "feature_ids": [7]})
    assert response.status_code == 200, response.text
    call = stub_states["sae"].calls[-1]
    assert (call["sae_id"], call["layer"]) == (stubs.SAE_ID, stubs.SAE_LAYER)
    body = response.json()
    assert [f["feature_id"] for f in body["features"]] == [7]
    assert body["features"][0]["argmax_position"] in (0, 1) and len(body["tokens"]) == 2
    layer_only = await client.post(
        ANALYZE, json={"token_ids": [1, 2], "feature_ids": [1], "layer": 3}
    )
    assert layer_only.status_code == 200
    assert (stub_states["sae"].calls[-1]["sae_id"], stub_states["sae"].calls[-1]["layer"]) == (
        stubs.SAE_ID,
        3,
    )


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("error500", 502, "upstream_error"),
        ("garbage", 502, "upstream_error"),
        ("wrong_shape", 502, "upstream_error"),
        ("slow", 504, "upstream_timeout"),
    ],
)
async def test_analyze_faults_name_the_sae(client, stub_states, mode, status, code):
    stub_states["sae"].mode = mode
    response = await client.post(ANALYZE, json={"token_ids": [1, 2], "feature_ids": [4]})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == (code, "sae")


async def test_analyze_rejection_is_the_callers(client, stub_states):
    response = await client.post(
        ANALYZE, json={"token_ids": [1, 2], "feature_ids": [4], "sae_id": "unknown_sae"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == ("upstream_rejected", "sae")

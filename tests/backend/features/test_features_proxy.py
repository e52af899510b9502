"""/playground/features/*: the SAE service proxied (same client as the run path)."""

from __future__ import annotations

import pytest

from backend.features.protocol import ExtractFeaturesResponse
from backend.upstreams.sae import SaeList
from tests.backend import stubs


async def test_extract_passes_through_with_defaults(client, stub_states):
    token_ids = [128000, 9906, 1917, 0]
    response = await client.post(
        "/playground/features/extract", json={"token_ids": token_ids, "top_k": 4, "output_start": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    ExtractFeaturesResponse.model_validate(body)
    assert body["feature_timeline"] == stubs.timeline(token_ids, 4, 2)
    call = stub_states["sae"].calls[-1]
    assert call == {
        "token_ids": token_ids,
        "sae_id": "llama_scope_lxr_8x",
        "layer": 16,
        "top_k": 4,
        "output_start": 2,
    }


async def test_analyze_passes_through(client, stub_states):
    response = await client.post(
        "/playground/features/analyze",
        json={"token_ids": [1, 2, 3], "feature_ids": [5, 9], "sae_id": "x_sae", "layer": 2},
    )
    assert response.status_code == 200
    body = response.json()
    assert [f["feature_id"] for f in body["features"]] == [5, 9]
    assert stub_states["sae"].calls[-1]["sae_id"] == "x_sae"


async def test_saes_listing(client):
    response = await client.get("/playground/features/saes")
    assert response.status_code == 200
    listing = SaeList.model_validate(response.json())
    assert listing.default.sae_id == "llama_scope_lxr_8x"
    assert listing.saes[0].d_sae == 32768


@pytest.mark.parametrize(
    ("mode", "status"), [("error500", 502), ("garbage", 502), ("wrong_shape", 502), ("slow", 504)]
)
async def test_proxy_faults_name_the_sae(client, stub_states, mode, status):
    stub_states["sae"].mode = mode
    for method, path, body in (
        ("POST", "/playground/features/extract", {"token_ids": [1, 2]}),
        ("GET", "/playground/features/saes", None),
    ):
        response = await client.request(method, path, json=body)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["upstream"] == "sae"


async def test_extract_bad_timeline_is_502(client, stub_states):
    stub_states["sae"].mode = "bad_timeline"
    response = await client.post("/playground/features/extract", json={"token_ids": [1, 2]})
    assert response.status_code == 502


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/playground/features/extract", {"token_ids": []}),
        ("/playground/features/extract", {"token_ids": [-1]}),
        ("/playground/features/extract", {"token_ids": [1] * 9000}),
        ("/playground/features/extract", {"token_ids": [1, 2], "output_start": 3}),
        ("/playground/features/extract", {"token_ids": [1], "top_k": 0}),
        ("/playground/features/extract", {"token_ids": [1], "extra": True}),
        ("/playground/features/analyze", {"token_ids": [1], "feature_ids": []}),
        ("/playground/features/analyze", {"token_ids": [1], "feature_ids": list(range(65))}),
    ],
)
async def test_proxy_bounds(client, stub_states, path, body):
    response = await client.post(path, json=body)
    assert response.status_code == 422
    assert stub_states["sae"].calls == []

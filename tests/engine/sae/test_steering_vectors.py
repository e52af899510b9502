"""POST /steering_vectors: decoder rows in the model's residual units, over real HTTP (the
suite's SAEs: a plain SAELens folder, a Llama Scope release whose norm_scaling_factor is undone,
the same Llama Scope weights in the SAELens layout), and its errors."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest


def rows(answer: dict) -> dict[int, np.ndarray]:
    return {
        v["feature_id"]: np.frombuffer(base64.b64decode(v["vector_b64"]), dtype="<f4")
        for v in answer["vectors"]
    }


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/steering_vectors", json=body, timeout=120)


@pytest.mark.parametrize("name", ["jumprelu", "scope", "scope_twin", "rescale"])
def test_rows_in_residual_units(sae_service_url, sae_suite, name):
    entry = sae_suite[name]
    ids = [7, 0, 7, entry.ref.d_sae - 1]
    response = post(
        sae_service_url, {"sae_id": entry.sae_id, "layer": entry.layer, "feature_ids": ids}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["sae_id"], answer["layer"], answer["d_in"]) == (entry.sae_id, entry.layer, 64)
    assert [v["feature_id"] for v in answer["vectors"]] == ids
    # The suite stores W_dec = W_enc.T; SAELens' decode divides by the normalisation factor
    # (1 where there is none; constant_norm_rescale has no constant one: rows as stored).
    factor = (
        entry.ref.norm_scaling_factor if entry.ref.normalize == "expected_average_only_in" else 1.0
    )
    assert name not in ("scope", "scope_twin") or factor != 1.0
    got = rows(answer)
    for v in answer["vectors"]:
        want = entry.ref.W_enc[:, v["feature_id"]].double().numpy() / factor
        assert got[v["feature_id"]] == pytest.approx(want, rel=1e-5, abs=1e-7)
        assert v["norm"] == pytest.approx(float(np.linalg.norm(want)), rel=1e-5)


def test_defaults_to_the_default_sae(sae_service_url):
    answer = post(sae_service_url, {"feature_ids": [1]}).json()
    saes = httpx.get(sae_service_url + "/saes", timeout=30).json()
    assert (answer["sae_id"], answer["layer"]) == (
        saes["default"]["sae_id"],
        saes["default"]["layer"],
    )


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"feature_ids": [1], "sae_id": "nope"}, 404, "sae_not_found"),
        ({"feature_ids": [1], "sae_id": "test_topk", "layer": 6}, 404, "sae_layer_not_found"),
        ({"feature_ids": [256]}, 422, "feature_id_out_of_range"),
        ({"feature_ids": []}, 422, "validation_error"),
        ({"feature_ids": [-1]}, 422, "validation_error"),
        ({"feature_ids": list(range(65))}, 422, "validation_error"),
        ({"feature_ids": [1], "surprise": True}, 422, "validation_error"),
        ({"feature_ids": [1], "sae_id": "test_broken"}, 503, "sae_load_failed"),
    ],
)
def test_errors(sae_service_url, body, status, code):
    response = post(sae_service_url, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code

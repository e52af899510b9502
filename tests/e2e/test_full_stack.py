"""The whole stack, real parts only: backend `run` -> vLLM engine (tiny model) -> SAE service
(demo SAE) -> Postgres; then the stored timeline is checked against a direct SAE call and the
derived `rows` and `top-features` against the stored timeline."""

from __future__ import annotations

from collections import defaultdict

import httpx
import pytest

from backend.app import create_app
from backend.settings import Settings
from tests.support.databases import create_database
from tests.support.servers import SERVICE_AUTH, SERVICE_TOKEN, serve_app

pytestmark = pytest.mark.vllm

SAE_TOP_K = 12


@pytest.fixture(scope="module")
async def backend_url(pg_uri, engine_url, sae_url, tiny_model_dir):
    database_url = create_database(pg_uri, prefix="e2e", migrate=True)
    settings = Settings(
        database_url=database_url,
        playground_activations_hf_url=engine_url,
        playground_sae_url=sae_url,
        playground_default_model_id=str(tiny_model_dir),
        playground_default_sae_id="demo_random",
        playground_default_sae_layer=16,
        playground_service_token=SERVICE_TOKEN,
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def run(backend_url) -> dict:
    body = {"prompt": "Name three colours.", "max_tokens": 16, "temperature": 0.0, "seed": 7}
    response = httpx.post(
        backend_url + "/playground/activations/run",
        json={**body, "sae_top_k": SAE_TOP_K},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_run_timeline_equals_direct_sae_call(run, sae_url):
    output = run["output"]
    prompt_ids, output_ids = output["prompt_token_ids"], output["token_ids"]
    assert prompt_ids[0] == 128000 and output_ids  # BOS from the chat template; tokens generated
    preview = run["preview"]
    assert (preview["sae_id"], preview["sae_layer"], preview["sae_top_k"]) == (
        "demo_random",
        16,
        SAE_TOP_K,
    )
    direct = httpx.post(
        sae_url + "/extract_features",
        json={
            "token_ids": prompt_ids + output_ids,
            "sae_id": "demo_random",
            "layer": 16,
            "top_k": SAE_TOP_K,
            "output_start": len(prompt_ids),
        },
        headers=SERVICE_AUTH,
        timeout=120,
    ).json()
    stored = preview["feature_timeline"]
    want = direct["feature_timeline"]
    assert len(stored) == len(want) == len(prompt_ids) + len(output_ids)
    for got, exp in zip(stored, want, strict=True):
        for key in ("position", "token_id", "token", "segment", "special"):
            assert got[key] == exp[key], (key, got, exp)
        assert [f["feature_id"] for f in got["features"]] == [
            f["feature_id"] for f in exp["features"]
        ]
        assert [f["activation"] for f in got["features"]] == pytest.approx(
            [f["activation"] for f in exp["features"]], rel=1e-6
        )
    assert sum(len(e["features"]) for e in stored) > 0


def test_stored_run_equals_response(run, backend_url):
    stored = httpx.get(f"{backend_url}/playground/activations/{run['request_id']}").json()
    assert stored["output"]["token_ids"] == run["output"]["token_ids"]
    assert stored["preview"]["feature_timeline"] == run["preview"]["feature_timeline"]


def expected_rows(timeline: list[dict], output_start: int) -> list[dict]:
    return [
        {
            "step": e["position"] - output_start if e["position"] >= output_start else None,
            "token_position": e["position"],
            "feature_id": f["feature_id"],
            "activation_value": f["activation"],
            "rank": rank,
            "token_id": e["token_id"],
        }
        for e in timeline
        for rank, f in enumerate(e["features"], start=1)
    ]


def test_rows_agree_with_stored_timeline(run, backend_url):
    rid = run["request_id"]
    timeline = httpx.get(f"{backend_url}/playground/activations/{rid}").json()["preview"][
        "feature_timeline"
    ]
    output_start = len(run["output"]["prompt_token_ids"])
    want = expected_rows(timeline, output_start)
    data = httpx.get(
        f"{backend_url}/playground/activations/{rid}/rows", params={"limit": 1000}
    ).json()
    assert data["total"] == len(want)
    got = [{k: row[k] for k in want[0]} for row in data["rows"]]
    assert len(got) == len(want)
    key = lambda r: (r["token_position"], r["rank"])  # noqa: E731
    for g, w in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
        assert {**g, "activation_value": 0} == {**w, "activation_value": 0}
        assert g["activation_value"] == pytest.approx(w["activation_value"], rel=1e-6)
    output_rows = httpx.get(
        f"{backend_url}/playground/activations/{rid}/rows",
        params={"segment": "output", "limit": 1000},
    ).json()
    assert output_rows["total"] == sum(1 for r in want if r["step"] is not None)
    fid = want[0]["feature_id"]
    one = httpx.get(
        f"{backend_url}/playground/activations/{rid}/rows",
        params={"feature_id": fid, "limit": 1000},
    ).json()
    assert one["total"] == sum(1 for r in want if r["feature_id"] == fid)


def expected_top_features(timeline: list[dict]) -> list[dict]:
    acts: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for entry in timeline:
        if entry["special"]:
            continue  # include_special defaults to false
        for f in entry["features"]:
            acts[f["feature_id"]].append((f["activation"], entry["position"]))
    out = []
    for fid, hits in acts.items():
        best = max(hits, key=lambda h: (h[0], -h[1]))
        out.append(
            {
                "feature_id": fid,
                "max_activation": best[0],
                "hits": len(hits),
                "mean_activation": sum(a for a, _ in hits) / len(hits),
                "max_position": best[1],
            }
        )
    out.sort(key=lambda r: (-r["max_activation"], -r["hits"], r["feature_id"]))
    return out


def test_top_features_agree_with_stored_timeline(run, backend_url):
    rid = run["request_id"]
    timeline = httpx.get(f"{backend_url}/playground/activations/{rid}").json()["preview"][
        "feature_timeline"
    ]
    want = expected_top_features(timeline)[:20]
    data = httpx.get(
        f"{backend_url}/playground/activations/{rid}/top-features", params={"limit": 20}
    ).json()
    got = data["top_features"]
    assert [g["feature_id"] for g in got] == [w["feature_id"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["hits"] == w["hits"] and g["max_position"] == w["max_position"]
        assert g["max_activation"] == pytest.approx(w["max_activation"], rel=1e-6)
        assert g["mean_activation"] == pytest.approx(w["mean_activation"], rel=1e-5)

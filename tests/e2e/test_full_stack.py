"""The whole stack, real parts only: backend `run` -> vLLM engine (tiny model) -> SAE service
(demo SAE) -> Postgres; then the stored timeline is checked against an independent float64
computation (full HF model residuals, the demo SAE's weights) and a direct SAE call, the derived
`rows` and `top-features` against the stored timeline, and the SAE proxy routes against direct
calls."""

from __future__ import annotations

import json
from collections import defaultdict

import httpx
import pytest

from engine.sae import protocol as sae_protocol
from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

SAE_TOP_K = 12


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


def test_features_proxy_on_the_real_sae(run, backend_url, sae_url):
    """/playground/features/extract and /analyze through the backend on the real SAE service:
    the answers are the real service's own models (what the stubs are held to) and equal direct
    calls; analyze's trace agrees with extract's top-k at each position."""
    prompt_ids, output_ids = run["output"]["prompt_token_ids"], run["output"]["token_ids"]
    ids, start = prompt_ids + output_ids, len(prompt_ids)
    # Defaults (sae_id, layer) filled in by the backend, as the page sends them.
    via = httpx.post(
        f"{backend_url}/playground/features/extract",
        json={"token_ids": ids, "top_k": 5, "output_start": start},
        timeout=120,
    )
    assert via.status_code == 200, via.text
    extracted = sae_protocol.ExtractResponse.model_validate(via.json())
    assert (extracted.sae_id, extracted.layer, extracted.top_k) == ("demo_random", 16, 5)
    direct = sae_protocol.ExtractResponse.model_validate(
        httpx.post(
            sae_url + "/extract_features",
            json={"token_ids": ids, "sae_id": "demo_random", "layer": 16, "top_k": 5,
                  "output_start": start},
            headers=SERVICE_AUTH,
            timeout=120,
        ).json()
    )  # fmt: skip
    assert len(extracted.feature_timeline) == len(ids)
    for got, exp in zip(extracted.feature_timeline, direct.feature_timeline, strict=True):
        assert got.model_dump(exclude={"features"}) == exp.model_dump(exclude={"features"})
        assert [f.feature_id for f in got.features] == [f.feature_id for f in exp.features]
        assert [f.activation for f in got.features] == pytest.approx(
            [f.activation for f in exp.features], rel=1e-6
        )

    fired = sorted({f.feature_id for e in extracted.feature_timeline for f in e.features})[:8]
    assert fired
    via = httpx.post(
        f"{backend_url}/playground/features/analyze",
        json={"token_ids": ids, "feature_ids": fired},
        timeout=120,
    )
    assert via.status_code == 200, via.text
    analyzed = sae_protocol.AnalyzeResponse.model_validate(via.json())
    assert (analyzed.sae_id, analyzed.layer) == ("demo_random", 16)
    assert [t.token_id for t in analyzed.tokens] == ids
    assert [t.token for t in analyzed.tokens] == [e.token for e in direct.feature_timeline]
    direct_analyzed = sae_protocol.AnalyzeResponse.model_validate(
        httpx.post(
            sae_url + "/analyze_features",
            json={"token_ids": ids, "feature_ids": fired, "sae_id": "demo_random", "layer": 16},
            headers=SERVICE_AUTH,
            timeout=120,
        ).json()
    )  # fmt: skip
    assert [f.feature_id for f in analyzed.features] == fired
    for trace, exp_trace in zip(analyzed.features, direct_analyzed.features, strict=True):
        assert len(trace.activations) == len(ids)
        assert trace.activations == pytest.approx(exp_trace.activations, rel=1e-5, abs=1e-6)
        assert trace.activations[trace.argmax_position] == trace.max_activation
        for entry in extracted.feature_timeline:  # the top-k values, seen from the trace
            for f in entry.features:
                if f.feature_id == trace.feature_id:
                    assert trace.activations[entry.position] == pytest.approx(
                        f.activation, rel=1e-4, abs=1e-5
                    )


def test_stored_timeline_equals_an_independent_float64_computation(
    run, backend_url, demo_sae_dir, tiny_model_dir
):
    """The stored timeline against the SAE formulas in float64 on the full HF model's residuals
    (output_hidden_states, not the service's truncated forward) with the demo SAE's weights read
    from its folder: a wrong layer, model or SAE in the serving path fails here, where a second
    call to the same service would agree with it."""
    from safetensors.torch import load_file

    from engine.sae.layouts import SAELENS_CFG, SAELENS_WEIGHTS
    from tests.engine.sae.builders import RefSae, reference_acts
    from tests.engine.sae.compare import assert_timeline_matches, gate_margin
    from tests.engine.sae.conftest import FullModel

    cfg = json.loads((demo_sae_dir / SAELENS_CFG).read_text())
    layer = cfg["metadata"]["hook_layer"]
    assert (cfg["sae_id"], layer) == (run["preview"]["sae_id"], run["preview"]["sae_layer"])
    weights = {k: v.double() for k, v in load_file(demo_sae_dir / SAELENS_WEIGHTS).items()}
    sae = RefSae(
        "jumprelu",
        W_enc=weights["W_enc"],
        b_enc=weights["b_enc"],
        b_dec=weights["b_dec"],
        threshold=weights["threshold"],
        apply_b_dec_to_input=cfg["apply_b_dec_to_input"],
    )
    ids = run["output"]["prompt_token_ids"] + run["output"]["token_ids"]
    x = FullModel(tiny_model_dir).resid(ids, layer)
    stored = httpx.get(f"{backend_url}/playground/activations/{run['request_id']}").json()
    timeline = stored["preview"]["feature_timeline"]
    assert [e["token_id"] for e in timeline] == ids
    checked = assert_timeline_matches(
        [[(f["feature_id"], f["activation"]) for f in e["features"]] for e in timeline],
        reference_acts(sae, x),
        gate_margin(sae, x),
        top_k=SAE_TOP_K,
    )
    assert checked >= len(ids)  # most positions have features to check

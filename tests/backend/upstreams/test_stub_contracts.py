"""The stub upstreams are held to the real services' response models (tests/support/contracts.py):
every route, in every on-contract mode, answers what the real service could; a drifted answer
(the old ``/analyze_features`` stub's) is refused."""

from __future__ import annotations

import httpx
import pytest

from engine.generation.protocol import HealthResponse as EngineHealth
from engine.sae.protocol import AnalyzeResponse, HealthResponse
from tests.support.contracts import ContractDrift, conforming

ANALYZE = {"token_ids": [128000, 9906, 1917], "feature_ids": [5, 9], "sae_id": "s", "layer": 1}
GENERATE = {"prompt": "hi", "max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "top_k": 0}
TOKENIZE = {"text": "hi", "chat": False, "parse_special_tokens": True}
EXTRACT = {"token_ids": [128000, 9906, 1917], "sae_id": "s", "layer": 1, "top_k": 3}


def test_the_drifted_analyze_answer_is_refused():
    """What the analyze stub used to answer: ``argmax``, no tokens, d_sae or model_id."""
    old = {
        "sae_id": "s",
        "layer": 1,
        "features": [{"feature_id": 5, "activations": [1.0], "max_activation": 1.0,
                      "argmax": 0, "explanation": None}],
    }  # fmt: skip
    with pytest.raises(ContractDrift) as caught:
        conforming(AnalyzeResponse, old)
    for name in ("argmax_position", "tokens", "d_sae", "model_id"):
        assert name in str(caught.value)


def test_unknown_and_defaulted_fields_are_drift_too():
    """The models ignore unknown keys and fill defaults; the round trip does not."""
    health = {"status": "ok", "model_id": "m", "backend": "vllm", "device": "cpu",
              "max_model_len": 8, "in_flight": 0, "aborted": 0}  # fmt: skip
    assert conforming(EngineHealth, health) is health
    with pytest.raises(ContractDrift, match="extra: not in the real model"):
        conforming(EngineHealth, {**health, "extra": 1})
    sae_health = {"status": "ok", "model_id": "m", "device": "cpu", "dtype": "float32",
                  "loaded_saes": [], "torch_threads": 1, "queued_jobs": 0,
                  "jobs_dropped": 0, "work_positions": 0, "stream_caches": None}  # fmt: skip
    conforming(HealthResponse, sae_health)
    with pytest.raises(ContractDrift, match="queued_jobs: missing"):
        conforming(HealthResponse, {k: v for k, v in sae_health.items() if k != "queued_jobs"})
    with pytest.raises(ContractDrift, match="torch_threads"):
        conforming(HealthResponse, {**sae_health, "torch_threads": "one"})


@pytest.mark.parametrize("mode", ["ok", "nul_text", "huge_ids", "no_labels", "error500", "down"])
async def test_every_stub_route_answers_on_contract(stub_urls, stub_states, mode):
    for state in stub_states.values():
        state.mode = mode
    async with httpx.AsyncClient(timeout=30) as http:
        answers = [
            await http.get(stub_urls["engine"] + "/health"),
            await http.post(stub_urls["engine"] + "/generate", json=GENERATE),
            await http.post(stub_urls["engine"] + "/tokenize", json=TOKENIZE),
            await http.get(stub_urls["sae"] + "/health"),
            await http.get(stub_urls["sae"] + "/saes"),
            await http.get(stub_urls["sae"] + "/saes/llama_scope_lxr_8x/16/labels"),
            await http.get(stub_urls["sae"] + "/saes/other/16/labels"),
            await http.get(stub_urls["sae"] + "/features/llama_scope_lxr_8x/16/3"),
            await http.get(stub_urls["sae"] + "/features/llama_scope_lxr_8x/16/30000"),
            await http.get(stub_urls["sae"] + "/features/llama_scope_lxr_8x/16/40000"),
            await http.post(stub_urls["sae"] + "/extract_features", json=EXTRACT),
            await http.post(stub_urls["sae"] + "/analyze_features", json=ANALYZE),
        ]
    drifts = [d for state in stub_states.values() for d in state.drifts]
    assert drifts == []
    assert all(a.json() for a in answers)  # JSON, as every real answer is
    if mode == "ok":
        assert [a.status_code for a in answers] == [200] * 6 + [404, 200, 200, 422, 200, 200]
    stub_states["sae"].drifts.clear()


async def test_a_drifted_stub_answer_fails_loudly(stub_urls, stub_states):
    """The check runs in the stub itself: off-contract it answers 500 and records why (which
    the autouse fixture turns into a failure; cleared here, the test is about that record)."""
    async with httpx.AsyncClient(timeout=30) as http:
        # The stub echoes sae_id: a number where the real service answers a string.
        response = await http.post(
            stub_urls["sae"] + "/extract_features", json={**EXTRACT, "sae_id": 7}
        )
    assert response.status_code == 500 and response.json()["error"]["code"] == "stub_drift"
    assert stub_states["sae"].drifts and "sae_id" in stub_states["sae"].drifts[0]
    stub_states["sae"].drifts.clear()

"""The benchmarks' stub engine and SAE (bench/backend.py: one prepared answer each, so that the
backend's own work is what is measured) are held to the real services' response models, like
the test stubs (tests/support/contracts.py): a drift fails here, not in a benchmark's figures."""

from __future__ import annotations

import httpx
import pytest

from bench.backend import serve_in_thread, stub_answers, stub_app
from engine.generation.protocol import GenerateResponse
from engine.sae.protocol import ExtractResponse
from tests.support.contracts import ContractDrift, conforming

MODELS = {"/generate": GenerateResponse, "/extract_features": ExtractResponse}


def test_the_bench_stub_answers_as_the_real_services_do():
    url, server, thread = serve_in_thread(stub_app(run_positions=40, top_k=5))
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for route, model in MODELS.items():
                got = client.post(route, json={})
                assert got.status_code == 200
                assert conforming(model, got.json()) == stub_answers(40, 5)[route]
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_drifted_answer_is_caught():
    body = stub_answers(40, 5)["/extract_features"]
    del body["work"]
    with pytest.raises(ContractDrift):
        conforming(ExtractResponse, body)

"""Operations through the whole stack, real parts only (backend -> vLLM engine on the tiny model
-> SAE service -> Postgres): after one run, a failed run, a streamed run and a 429, every metric
docs/operations.md names exists in the three services' scrapes; vLLM's and the SAE service's
counters moved by what those runs did; one run's request id is in the three services' response
headers and log lines; /metrics answers 401 without the service token."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from backend.app import create_app
from common import sse
from common.request_id import RequestIdFilter
from tests.e2e.conftest import e2e_settings
from tests.support.databases import create_database
from tests.support.metrics import documented_metrics, missing_metrics, sample, scrape
from tests.support.servers import SERVICE_AUTH, serve_app

pytestmark = pytest.mark.vllm

RUN = "/playground/activations/run"
TRACE = "e2e-trace-7f3c2a"
HOSTILE = "caf\u00e9 \u65e5\u672c hostile-id"
BODY = {"prompt": "Name three colours.", "max_tokens": 8, "temperature": 0.0, "seed": 5}


@pytest.fixture(scope="module")
def rate_limited_backend_url(pg_uri, engine_url, sae_url, tiny_model_dir):
    """The e2e backend (tests/e2e/conftest.py) whose fifth GPU request of this module is a 429."""
    database_url = create_database(pg_uri, prefix="e2e_obs", migrate=True)
    settings = e2e_settings(
        database_url, engine_url, sae_url, tiny_model_dir, playground_rate_gpu_per_window=4
    )
    with serve_app(create_app(settings)) as url:
        yield url


def _scrape(url: str, headers: dict[str, str] | None = None):
    answer = httpx.get(url + "/metrics", headers=headers or {}, timeout=30)
    assert answer.status_code == 200, answer.text
    return scrape(answer.text), answer.text


def _total(samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_request_ids_and_logs_across_the_stack(
    rate_limited_backend_url, engine_url, sae_url, artifacts_dir, caplog
):
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="backend.runs")
    # The engine and SAE service guard /metrics with the service token like every route.
    assert httpx.get(engine_url + "/metrics", timeout=30).status_code == 401
    assert httpx.get(sae_url + "/metrics", timeout=30).status_code == 401
    engine_before, _ = _scrape(engine_url, SERVICE_AUTH)
    sae_before, _ = _scrape(sae_url, SERVICE_AUTH)

    # 1: a run with a given request id.
    ok = httpx.post(
        rate_limited_backend_url + RUN,
        json={**BODY, "request_id": "obs-e2e-ok"},
        headers={"x-request-id": TRACE},
        timeout=300,
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-request-id"] == TRACE and ok.json()["trace_id"] == TRACE
    # 2: a refused run (the SAE service does not list the SAE: 404 before any generation,
    # nothing stored).
    refused_run = httpx.post(
        rate_limited_backend_url + RUN,
        json={**BODY, "request_id": "obs-e2e-refused", "sae_id": "no_such_sae"},
        timeout=300,
    )
    assert refused_run.status_code == 404, refused_run.text
    # 3: a streamed run.
    with httpx.stream(
        "POST",
        rate_limited_backend_url + RUN,
        json={**BODY, "request_id": "obs-e2e-stream"},
        headers={"accept": "text/event-stream"},
        timeout=300,
    ) as stream:
        assert stream.status_code == 200
        events = [name for name, _ in sse.parse(stream.iter_lines())]
    assert events[-1] == "done" and "token" in events
    # 4: a hostile id (never sent on, logged or stored raw).
    hostile = httpx.post(
        rate_limited_backend_url + RUN,
        json={**BODY, "request_id": "obs-e2e-hostile"},
        headers=[(b"x-request-id", HOSTILE.encode())],
        timeout=300,
    )
    assert hostile.status_code == 200
    replaced = hostile.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced) and hostile.json()["trace_id"] == replaced
    # 5: over the window's 4 GPU requests.
    assert httpx.post(rate_limited_backend_url + RUN, json=BODY, timeout=60).status_code == 429
    # 6: the engine refuses a request of ours (its error counter).
    too_long = {"prompt": "x", "max_tokens": 10**6}
    refused = httpx.post(engine_url + "/generate", json=too_long, headers=SERVICE_AUTH, timeout=60)
    assert refused.status_code == 422
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    # 7: the SAE service refuses a request of ours (its error counter).
    unknown_sae = {"token_ids": [1, 2], "sae_id": "no_such_sae"}
    sae_refused = httpx.post(
        sae_url + "/extract_features", json=unknown_sae, headers=SERVICE_AUTH, timeout=60
    )
    assert sae_refused.status_code == 404, sae_refused.text

    backend, backend_text = _scrape(rate_limited_backend_url)
    engine, _ = _scrape(engine_url, SERVICE_AUTH)
    sae, _ = _scrape(sae_url, SERVICE_AUTH)
    for name, samples, service in (
        ("backend", backend, "backend"),
        ("engine", engine, "engine"),
        ("sae", sae, "sae"),
    ):
        missing = missing_metrics(samples, documented_metrics(service, "all"))
        assert not missing, f"{name}: documented metrics missing from its scrape: {missing}"

    # What the runs did, counted: three runs stored (all ok), one streamed with a TTFT, one
    # refused before it reached an upstream.
    total = "playground_run_stage_seconds_count"
    assert sample(backend, total, stage="total", outcome="ok") == 3
    assert sample(backend, total, stage="total", outcome="failed") == 0
    assert sample(backend, "playground_http_errors_total", route=RUN, code="sae_not_found") == 1
    assert sample(backend, "playground_run_ttft_seconds_count") == 1
    assert sample(backend, "playground_streaming_runs_in_flight") == 0
    code = "rate_limited"
    assert sample(backend, "playground_limit_refusals_total", code=code, route_class="gpu") == 1
    assert TRACE not in backend_text and "no_such_sae" not in backend_text
    errors = "playground_http_errors_total"
    code = refused.json()["error"]["code"]
    assert (
        sample(engine, errors, route="/generate", code=code)
        - sample(engine_before, errors, route="/generate", code=code)
        == 1
    )
    sae_error = {"route": "/extract_features", "code": "sae_not_found"}
    assert sample(sae, errors, **sae_error) - sample(sae_before, errors, **sae_error) == 1
    # vLLM generated for the three stored runs, not for the refused one.
    engine_done = _total(engine, "vllm:request_success_total")
    assert engine_done - _total(engine_before, "vllm:request_success_total") == 3
    sampler = [labels for (n, labels), _ in engine.items() if n.endswith("sampler_plugin_info")]
    assert len(sampler) == 1 and dict(sampler[0])["enabled"] in ("true", "false")
    # The SAE service encoded three runs' sequences (the stream's in chunks), refused nothing.
    work = "playground_sae_work_positions_total"
    assert sample(sae, work) > sample(sae_before, work)
    assert sample(sae, "playground_sae_queue_full_total") == 0
    extracted = "playground_sae_encode_seconds_count"
    assert (
        sample(sae, extracted, kind="extract") - sample(sae_before, extracted, kind="extract") >= 3
    )

    # One request id across the three services' logs (uvicorn's access lines and ours).
    runs = [r for r in caplog.records if r.name == "backend.runs" and r.request_id == TRACE]
    assert len(runs) == 1 and runs[0].getMessage().startswith("run obs-e2e-ok ok")
    engine_log = (artifacts_dir / "engine.log").read_text(errors="replace")
    sae_log = (artifacts_dir / "sae.log").read_text(errors="replace")
    assert re.search(rf"\[{TRACE}\] .*POST /generate", engine_log), "engine log lacks the id"
    assert re.search(rf"\[{TRACE}\] .*POST /extract_features", sae_log), "SAE log lacks the id"
    assert f"[{replaced}]" in engine_log and f"[{replaced}]" in sae_log
    for text in (engine_log, sae_log, caplog.text):
        assert HOSTILE not in text and "hostile-id" not in text

"""The backend's metrics, request id and run log line, against stub upstreams and the real
Postgres: /metrics behind its token, counters that move by exactly what a known sequence of
requests should move them, every backend metric of docs/operations.md present, the request id
passed to the engine and the SAE service, stored beside the run, and a hostile one replaced."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest

from backend.app import create_app
from common.request_id import RequestIdFilter
from tests.backend.conftest import backend_settings
from tests.support.metrics import documented_metrics, missing_metrics, sample, scrape
from tests.support.servers import serve_app, serve_subcommand

RUN = "/playground/activations/run"
METRICS_TOKEN = "metrics-secret"
AUTH = {"authorization": f"Bearer {METRICS_TOKEN}"}
FRESH_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def limited_url(db_uri, stub_urls):
    """A backend with a metrics token and 3 GPU requests per window per client."""
    settings = backend_settings(
        db_uri,
        stub_urls,
        playground_metrics_token=METRICS_TOKEN,
        playground_rate_gpu_per_window=3,
    )
    with serve_app(create_app(settings)) as url:
        yield url


def _body(**extra) -> dict:
    return {"prompt": "Observe me.", "max_tokens": 4, "temperature": 0.0, **extra}


async def test_metrics_token_and_exact_counters(limited_url, stub_states):
    async with httpx.AsyncClient(base_url=limited_url, timeout=30) as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert (
            await http.get("/metrics", headers={"authorization": "Bearer wrong"})
        ).status_code == 401
        before = scrape((await http.get("/metrics", headers=AUTH)).text)

        # Known sequence: one good run, one the engine fails (502, stored failed), one good
        # run, then a fourth GPU request over the window's 3 (429, its route never runs).
        assert (await http.post(RUN, json=_body(request_id="obs-ok-1"))).status_code == 200
        stub_states["engine"].mode = "error500"
        failed = await http.post(RUN, json=_body(request_id="obs-failed-1"))
        assert failed.status_code == 502, failed.text
        stub_states["engine"].mode = "ok"
        assert (await http.post(RUN, json=_body(request_id="obs-ok-2"))).status_code == 200
        limited = await http.post(RUN, json=_body(request_id="obs-limited"))
        assert limited.status_code == 429
        assert FRESH_ID.fullmatch(limited.headers["x-request-id"])  # refusals carry one too

        scraped = await http.get("/metrics", headers=AUTH)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        after = scrape(scraped.text)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    total = "playground_run_stage_seconds_count"
    assert delta(total, stage="total", outcome="ok") == 2
    assert delta(total, stage="total", outcome="failed") == 1
    assert delta(total, stage="engine", outcome="ok") == 2
    assert delta(total, stage="sae", outcome="ok") == 2
    assert delta(total, stage="db", outcome="failed") == 1
    assert delta("playground_limit_refusals_total", code="rate_limited", route_class="gpu") == 1
    assert delta("playground_http_errors_total", route=RUN, code="upstream_error") == 1
    assert delta("http_requests_total", handler=RUN, method="POST", status="200") == 2
    assert delta("http_requests_total", handler=RUN, method="POST", status="502") == 1
    assert delta("http_requests_total", handler=RUN, method="POST", status="429") == 1
    assert sample(after, "playground_db_pool_connections", state="idle") >= 0
    assert sample(after, "playground_streaming_runs_in_flight") == 0
    # No request id, prompt or run id ever becomes a label.
    assert "obs-ok-1" not in scraped.text and "Observe me" not in scraped.text

    # Every backend metric the docs name exists (those only a stream makes: the e2e test).
    wanted = documented_metrics("backend", "all")
    assert not missing_metrics(after, wanted), missing_metrics(after, wanted)


async def test_request_id_passed_on_stored_and_logged(client, stub_states, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="backend.runs"):
        answer = await client.post(
            RUN, json=_body(request_id="rid-run-1"), headers={"x-request-id": "trace-Abc.1:2_3"}
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "trace-Abc.1:2_3"
    assert answer.json()["trace_id"] == "trace-Abc.1:2_3"
    # Passed to both upstreams.
    assert stub_states["engine"].request_ids == ["trace-Abc.1:2_3"]
    assert stub_states["sae"].request_ids == ["trace-Abc.1:2_3"]
    # Stored beside the run, and in its read.
    read = await client.get("/playground/activations/rid-run-1")
    assert read.json()["trace_id"] == "trace-Abc.1:2_3"
    assert read.headers["x-request-id"] != "trace-Abc.1:2_3"  # another request, another id
    # The run's one INFO line carries the id, the timings and no prompt.
    lines = [r for r in caplog.records if r.name == "backend.runs"]
    assert len(lines) == 1
    assert lines[0].request_id == "trace-Abc.1:2_3"
    message = lines[0].getMessage()
    assert message.startswith("run rid-run-1 ok engine=") and "db=" in message
    assert "Observe me" not in message


async def test_without_a_header_a_fresh_id(client, stub_states):
    answer = await client.post(RUN, json=_body(request_id="rid-fresh"))
    rid = answer.headers["x-request-id"]
    assert FRESH_ID.fullmatch(rid)
    assert answer.json()["trace_id"] == rid
    assert stub_states["engine"].request_ids == [rid] and stub_states["sae"].request_ids == [rid]


@pytest.mark.parametrize(
    "hostile",
    [
        b"x" * 5000,  # huge
        "caf\u00e9-\u65e5\u672c".encode(),  # non-ASCII
        b"a b\tc",  # whitespace
        b'"><script>alert(1)</script>',  # outside the allowed characters
        b"x" * 65,  # one over the bound
        b"",
    ],
    ids=["huge", "non_ascii", "whitespace", "markup", "65_chars", "empty"],
)
async def test_hostile_request_id_is_replaced_never_logged(client, stub_states, caplog, hostile):
    caplog.handler.addFilter(RequestIdFilter())
    request_id = f"rid-hostile-{len(hostile)}-{hostile[:1].hex()}"
    with caplog.at_level(logging.DEBUG):
        answer = await client.post(
            RUN, json=_body(request_id=request_id), headers=[(b"x-request-id", hostile)]
        )
    assert answer.status_code == 200, answer.text
    rid = answer.headers["x-request-id"]
    assert FRESH_ID.fullmatch(rid)
    assert answer.json()["trace_id"] == rid
    assert stub_states["engine"].request_ids == [rid]
    if hostile:
        raw = hostile.decode("utf-8", "replace")
        assert all(raw not in r.getMessage() and raw != r.request_id for r in caplog.records)
    assert any(r.request_id == rid for r in caplog.records if r.name == "backend.runs")


async def test_metrics_off_means_no_route_and_no_counting(db_uri, stub_urls):
    settings = backend_settings(db_uri, stub_urls, playground_metrics=False)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/metrics")).status_code == 404
            answer = await http.post(RUN, json=_body(request_id="rid-metrics-off"))
            assert answer.status_code == 200
            assert FRESH_ID.fullmatch(answer.headers["x-request-id"])  # ids stay on


def test_json_logs_of_the_backend_process(db_uri, stub_urls, artifacts_dir):
    """`playground backend` with PLAYGROUND_LOG_FORMAT=json: every line one JSON object, the
    run's line and uvicorn's access line carrying the request id, no prompt anywhere."""
    env = {
        "DATABASE_URL": db_uri,
        "PLAYGROUND_ACTIVATIONS_HF_URL": stub_urls["engine"],
        "PLAYGROUND_SAE_URL": stub_urls["sae"],
        "PLAYGROUND_LOG_FORMAT": "json",
    }
    log_path = artifacts_dir / "backend-json.log"
    with serve_subcommand(["backend", "--no-migrate"], log_path=log_path, env=env) as url:
        answer = httpx.post(
            url + RUN,
            json=_body(request_id="rid-json-log", prompt="A secret prompt."),
            headers={"x-request-id": "json-trace-1"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line parses on its own
    assert all({"ts", "level", "logger", "message", "request_id"} <= e.keys() for e in entries)
    ours = [e for e in entries if e["request_id"] == "json-trace-1"]
    assert {e["logger"] for e in ours} >= {"backend.runs", "uvicorn.access"}
    run = next(e for e in ours if e["logger"] == "backend.runs")
    assert run["level"] == "INFO" and run["service"] == "backend"
    assert run["message"].startswith("run rid-json-log ok")
    assert "A secret prompt" not in log_path.read_text()

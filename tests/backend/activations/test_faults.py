"""Upstream faults: the right status naming the upstream, a failed index row, no preview, and
a server that keeps serving. Plus concurrent runs with one request_id."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backend.app import create_app
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

FAULTS = [
    ("slow", 504, "upstream_timeout"),
    ("huge_ids", 502, "upstream_error"),
    ("error500", 502, "upstream_error"),
    ("garbage", 502, "upstream_error"),
    ("wrong_shape", 502, "upstream_error"),
]


@pytest.mark.parametrize(("mode", "status", "code"), FAULTS)
@pytest.mark.parametrize("upstream", ["engine", "sae"])
async def test_upstream_fault(client, db, stub_states, upstream, mode, status, code):
    stub_states[upstream].mode = mode
    request_id = f"fault-{upstream}-{mode}"
    response = await client.post(
        "/playground/activations/run", json={"prompt": "fault test", "request_id": request_id}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["upstream"]) == (code, upstream)
    assert upstream in error["message"]
    index = await db.fetchrow(
        "SELECT status, error_code, error_upstream, has_preview FROM activation_run_index "
        "WHERE request_id = $1",
        request_id,
    )
    assert dict(index) == {
        "status": "failed",
        "error_code": code,
        "error_upstream": upstream,
        "has_preview": False,
    }
    previews = "SELECT count(*) FROM activation_run_previews WHERE request_id = $1"
    assert await db.fetchval(previews, request_id) == 0
    got = (await client.get(f"/playground/activations/{request_id}")).json()
    assert got["status"] == "failed" and got["error"]["upstream"] == upstream
    assert got["output"] is None and got["preview"] is None
    rows = await client.get(f"/playground/activations/{request_id}/rows")
    assert rows.status_code == 404 and rows.json()["error"]["code"] == "no_preview"

    stub_states[upstream].mode = "ok"
    ok = await client.post("/playground/activations/run", json={"prompt": "after the fault"})
    assert ok.status_code == 200


async def test_sae_bad_timeline_and_rejection(client, db, stub_states):
    stub_states["sae"].mode = "bad_timeline"
    response = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "bad-timeline"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["upstream"] == "sae"
    assert "timeline" in response.json()["error"]["message"]
    stub_states["sae"].mode = "ok"
    # An SAE the SAE service does not list: the caller's input, refused (404) before any
    # generation, nothing recorded (issue 20: no GPU work for a run that cannot finish).
    stub_states["engine"].calls.clear()
    response = await client.post(
        "/playground/activations/run",
        json={"prompt": "x", "request_id": "rejected", "sae_id": "unknown_sae"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "sae_not_found"
    assert stub_states["engine"].calls == []
    status = "SELECT status FROM activation_run_index WHERE request_id = 'rejected'"
    assert await db.fetchval(status) is None


async def test_failure_never_replaces_a_success(client, db, stub_states):
    """The owner's failed re-run is answered as a failure, but the run that succeeded stays."""
    ok = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "then-fails"}
    )
    assert ok.status_code == 200
    before = (await client.get("/playground/activations/then-fails")).json()
    stub_states["sae"].mode = "error500"
    failed = await client.post(
        "/playground/activations/run",
        json={"prompt": "y", "request_id": "then-fails"},
        headers={"X-Run-Owner": ok.json()["owner_token"]},
    )
    assert failed.status_code == 502
    previews = "SELECT count(*) FROM activation_run_previews WHERE request_id = 'then-fails'"
    assert await db.fetchval(previews) == 1
    index = await db.fetchrow(
        "SELECT status, has_preview FROM activation_run_index WHERE request_id = 'then-fails'"
    )
    assert (index["status"], index["has_preview"]) == ("ok", True)
    stub_states["sae"].mode = "ok"
    after = (await client.get("/playground/activations/then-fails")).json()
    assert after["prompt"] == before["prompt"] == "x" and after["preview"] == before["preview"]


async def test_failed_run_can_be_retried_by_its_owner(client, db, stub_states):
    """A new run that fails still hands its owner the token (header), so they can retry it."""
    stub_states["engine"].mode = "error500"
    failed = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "fails-first"}
    )
    assert failed.status_code == 502
    token = failed.headers["x-run-owner"]
    stub_states["engine"].mode = "ok"
    foreign = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "fails-first"}
    )
    assert foreign.status_code == 409
    retried = await client.post(
        "/playground/activations/run",
        json={"prompt": "x", "request_id": "fails-first"},
        headers={"X-Run-Owner": token},
    )
    assert retried.status_code == 200, retried.text
    status = "SELECT status FROM activation_run_index WHERE request_id = 'fails-first'"
    assert await db.fetchval(status) == "ok"


@pytest.mark.parametrize("down", ["engine", "sae"])
async def test_upstream_down(db_uri, db, stub_urls, dead_url, down):
    urls = {**stub_urls, down: dead_url}
    with serve_app(create_app(backend_settings(db_uri, urls))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            request_id = f"down-{down}"
            response = await client.post(
                "/playground/activations/run", json={"prompt": "x", "request_id": request_id}
            )
            assert response.status_code == 503
            error = response.json()["error"]
            assert (error["code"], error["upstream"]) == ("upstream_unavailable", down)
            status = "SELECT status FROM activation_run_index WHERE request_id = $1"
            assert await db.fetchval(status, request_id) == "failed"
            health = await client.get("/playground/activations/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "degraded" and body[down]["ok"] is False
            if down == "engine":
                # The SAE proxy does not depend on the engine.
                saes = await client.get("/playground/features/saes")
                assert saes.status_code == 200


@pytest.fixture
async def roomy_client(db_uri, stub_urls):
    """The module's backend but with upstream timeouts far from what 50 concurrent runs take on
    2 cores (the module's are 1 s, for the timeout faults): a 504 here would not be the race."""
    settings = backend_settings(
        db_uri, stub_urls, playground_engine_timeout_s=60.0, playground_sae_timeout_s=60.0
    )
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            yield http


async def test_fifty_concurrent_runs_same_id(roomy_client, db):
    """Fifty runs racing to create one request_id: one takes it, 49 get 409. Then fifty re-runs
    by its owner racing leave exactly one consistent index+preview pair."""
    client = roomy_client
    prompts = [f"concurrent prompt number {i}" for i in range(50)]

    async def one(prompt: str, collect: bool, owner: str | None = None) -> httpx.Response:
        return await client.post(
            "/playground/activations/run",
            json={"prompt": prompt, "request_id": "race", "collect_activations": collect},
            headers={"X-Run-Owner": owner} if owner else {},
        )

    first = await asyncio.gather(*(one(p, True) for p in prompts))
    assert sorted(r.status_code for r in first) == [200] + [409] * 49
    owner = next(r for r in first if r.status_code == 200).json()["owner_token"]
    again = await asyncio.gather(*(one(p, i % 3 != 0, owner) for i, p in enumerate(prompts)))
    statuses = [r.status_code for r in again]
    assert statuses == [200] * 50
    index = await db.fetch("SELECT * FROM activation_run_index WHERE request_id = 'race'")
    previews = await db.fetch("SELECT * FROM activation_run_previews WHERE request_id = 'race'")
    assert len(index) == 1 and len(previews) == 1
    i, p = index[0], previews[0]
    # Both rows come from the same run.
    assert i["prompt_preview"] == p["prompt"] and p["prompt"] in prompts
    assert i["output_tokens"] == len(p["output_token_ids"])
    assert i["created_at"] == p["created_at"]
    assert i["has_preview"] == (p["sae_id"] is not None)
    assert i["sae_id"] == p["sae_id"]
    got = (await client.get("/playground/activations/race")).json()
    assert got["prompt"] == p["prompt"]


async def test_nul_characters_from_upstreams_are_stored(client, db, stub_states):
    """Postgres text/jsonb refuse NUL; a byte-level token may decode to it. Stored as U+FFFD."""
    stub_states["engine"].mode = "nul_text"
    stub_states["sae"].mode = "nul_text"
    response = await client.post(
        "/playground/activations/run", json={"prompt": "x", "request_id": "nul-1"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"]["text"].endswith("\ufffd")
    assert body["preview"]["feature_timeline"][-1]["token"] == "\ufffd"
    got = (await client.get("/playground/activations/nul-1")).json()
    assert got["preview"]["feature_timeline"][-1]["token"] == "\ufffd"
    tokens = await db.fetchval(
        "SELECT timeline_tokens FROM activation_run_previews WHERE request_id = 'nul-1'"
    )
    assert tokens[-1] == "\ufffd"
    stored = await db.fetchval(
        "SELECT output_text FROM activation_run_previews WHERE request_id = 'nul-1'"
    )
    assert stored.endswith("\ufffd")

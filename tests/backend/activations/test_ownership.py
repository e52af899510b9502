"""Run ownership (contracts.md, "Run ownership") on the real backend, real Postgres and stub
upstreams: the issue's attack (overwrite another's run) fails before any upstream call; the
owner re-runs and deletes; legacy rows are read-only; a failure never lands over a success."""

from __future__ import annotations

import hashlib

import pytest

RUN = "/playground/activations/run"
OVERSIZED = " ".join(["word"] * 3100)


async def create(client, request_id: str, **body) -> dict:
    response = await client.post(
        RUN, json={"prompt": "victim prompt", "request_id": request_id, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def snapshot(db, request_id: str):
    index = await db.fetchrow(
        "SELECT * FROM activation_run_index WHERE request_id = $1", request_id
    )
    preview = await db.fetchrow(
        "SELECT * FROM activation_run_previews WHERE request_id = $1", request_id
    )
    return dict(index) if index else None, dict(preview) if preview else None


@pytest.mark.parametrize("header", [None, "not-the-owner-token"])
async def test_foreign_write_is_409_before_any_upstream_call(client, db, stub_states, header):
    victim = await create(client, f"victim-{header is None}")
    rid = victim["request_id"]
    token = victim["owner_token"]
    assert isinstance(token, str) and len(token) >= 40
    stored = await db.fetchval(
        "SELECT owner_hash FROM activation_run_owners WHERE request_id = $1", rid
    )
    assert stored == hashlib.sha256(token.encode()).digest()  # only the hash is kept
    before = await snapshot(db, rid)
    stub_states["engine"].calls.clear()
    stub_states["sae"].calls.clear()
    stub_states["engine"].mode = "error500"  # the attack made the engine fail
    headers = {"X-Run-Owner": header} if header else {}
    response = await client.post(
        RUN,
        # The attack, at sae_top_k 1 so that its timeline fits the byte cap (8 MiB).
        json={"prompt": OVERSIZED, "request_id": rid, "max_tokens": 2048, "sae_top_k": 1},
        headers=headers,
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "run_owned" and rid in error["message"]
    assert "x-run-owner" not in response.headers
    assert stub_states["engine"].calls == [] and stub_states["sae"].calls == []
    assert await snapshot(db, rid) == before
    stub_states["engine"].mode = "ok"
    rows = await client.get(f"/playground/activations/{rid}/rows")
    assert rows.status_code == 200 and rows.json()["total"] > 0


async def test_owner_reruns_and_deletes(client, db):
    victim = await create(client, "owned-1")
    token = victim["owner_token"]
    rerun = await client.post(
        RUN, json={"prompt": "second", "request_id": "owned-1"}, headers={"X-Run-Owner": token}
    )
    assert rerun.status_code == 200 and rerun.json()["owner_token"] is None
    assert (await client.get("/playground/activations/owned-1")).json()["prompt"] == "second"

    for headers in ({}, {"X-Run-Owner": "wrong"}):
        refused = await client.delete("/playground/activations/owned-1", headers=headers)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "run_owned"
    deleted = await client.delete("/playground/activations/owned-1", headers={"X-Run-Owner": token})
    assert deleted.status_code == 204
    for path in ("", "/rows", "/top-features"):
        assert (await client.get(f"/playground/activations/owned-1{path}")).status_code == 404
    listed = (await client.get("/playground/activations/runs", params={"limit": 200})).json()
    assert "owned-1" not in {r["request_id"] for r in listed["runs"]}
    assert await snapshot(db, "owned-1") == (None, None)
    again = await client.delete("/playground/activations/owned-1", headers={"X-Run-Owner": token})
    assert again.status_code == 404


async def test_legacy_rows_are_read_only(client, db, stub_states):
    """A row that predates ownership (adopted from staging) has no owner: nobody writes it."""
    await db.execute(
        "INSERT INTO activation_run_index (request_id, model_id, prompt_preview) "
        "VALUES ('legacy-1', 'old-model', 'old prompt')"
    )
    before = await snapshot(db, "legacy-1")
    stub_states["engine"].calls.clear()
    for headers in ({}, {"X-Run-Owner": "anything"}):
        response = await client.post(
            RUN, json={"prompt": "x", "request_id": "legacy-1"}, headers=headers
        )
        assert response.status_code == 409 and "read-only" in response.json()["error"]["message"]
        deleted = await client.delete("/playground/activations/legacy-1", headers=headers)
        assert deleted.status_code == 409
    assert stub_states["engine"].calls == []
    assert await snapshot(db, "legacy-1") == before
    assert (await client.get("/playground/activations/legacy-1")).status_code in (200, 410)


async def test_parse_special_tokens_is_sent_and_stored(client, db, stub_states):
    body = {"prompt": "<|eot_id|>x", "request_id": "raw-special", "chat": False}
    await create(client, **{**body, "parse_special_tokens": True})
    assert stub_states["engine"].calls[-1]["parse_special_tokens"] is True
    stored = "SELECT parse_special_tokens FROM activation_run_index WHERE request_id = $1"
    assert await db.fetchval(stored, "raw-special") is True
    await create(client, "chat-default")
    assert stub_states["engine"].calls[-1]["parse_special_tokens"] is False
    assert await db.fetchval(stored, "chat-default") is False
    refused = await client.post(RUN, json={"prompt": "x", "parse_special_tokens": True})
    assert refused.status_code == 422  # chat mode never parses


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "x" * 15_000, "max_tokens": 2048, "sae_top_k": 128}, "timeline_too_large"),
        ({"prompt": "😀" * 4000, "max_tokens": 2048, "sae_top_k": 100}, "timeline_too_large"),
    ],
)
async def test_timeline_caps_before_any_gpu_work(client, db, stub_states, body, code):
    stub_states["engine"].calls.clear()
    response = await client.post(RUN, json={**body, "request_id": "too-big"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert stub_states["engine"].calls == []
    assert await snapshot(db, "too-big") == (None, None)
    owner = "SELECT count(*) FROM activation_run_owners WHERE request_id = 'too-big'"
    assert await db.fetchval(owner) == 0  # refused before the claim too
    # Without activations there is no timeline to bound.
    ok = await client.post(RUN, json={**body, "collect_activations": False})
    assert ok.status_code == 200, ok.text

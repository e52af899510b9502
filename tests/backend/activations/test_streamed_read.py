"""GET /playground/activations/{request_id} of a run with a timeline is streamed (issue 20, "large
reads streamed, not built in memory"): the stored timeline JSON is written as fetched between
the parts of its envelope (backend/activations/json_parts.py). The bytes on the wire are the
ones the route answered when it built the whole answer (``OrjsonResponse`` of the view with
the timeline embedded), the content type too; errors (404, 410) stay plain JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from backend.activations import json_parts
from backend.activations.protocol import ActivationRunResponse
from backend.activations.reads import load_timeline
from backend.activations.steering_views import with_pair
from backend.activations.views import stored_run_view
from backend.app import create_app
from backend.db import pairs, run_reads
from common.responses import OrjsonResponse
from tests.backend.conftest import backend_settings

RUN = "/playground/activations/run"
# A run whose stored timeline JSON is several PART_CHUNKs: 300 output positions x 64 features.
LARGE = {"prompt": "a large run to read back", "max_tokens": 300, "sae_top_k": 64}


async def whole_answer(db, request_id: str, base_url: str) -> bytes:
    """What the route answered before it streamed: the view, timeline embedded, in one
    ``OrjsonResponse`` (the old code path, from the same stored rows)."""
    row = await run_reads.get_run(db, request_id)
    pair = await pairs.get_pair(db, request_id)
    timeline = load_timeline(row["timeline_packed"], row["feature_timeline"])
    return bytes(OrjsonResponse(with_pair(stored_run_view(row, timeline, base_url), pair)).body)


def base_of(run: dict[str, Any]) -> str:
    return run["permalink"].split("/playground/activations")[0]


def test_the_parts_are_the_whole_answer(monkeypatch):
    """A NUL in a string is escaped, so it is not taken for the slot; a str part is sliced by
    characters (non-ASCII too), a bytes part by bytes."""
    monkeypatch.setattr(json_parts, "PART_CHUNK", 3)
    part = '[{"token":"é😀\\u0000x"},1.5]'
    content = {"a": "nul\x00here", "b": {"t": json_parts.SLOT}, "c": [1, "ü"]}
    whole = OrjsonResponse({**content, "b": {"t": orjson.Fragment(part)}}).body
    for given in (part, part.encode()):
        chunks = list(json_parts.around(content, given))
        assert b"".join(chunks) == whole and len(chunks) > 4
    with pytest.raises(ValueError, match="exactly one SLOT"):
        json_parts.envelope({"a": json_parts.SLOT, "b": json_parts.SLOT})
    with pytest.raises(ValueError, match="exactly one SLOT"):
        json_parts.envelope({"a": 1})


async def test_the_streamed_read_is_the_same_bytes(client, db, stub_states):
    stub_states["engine"].output_len = LARGE["max_tokens"]
    stub_states["sae"].dense = True
    created = await client.post(RUN, json={**LARGE, "request_id": "big-read"})
    assert created.status_code == 200, created.text
    response = await client.get("/playground/activations/big-read")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get("transfer-encoding") == "chunked"  # no Content-Length now
    body = response.content
    assert body == await whole_answer(db, "big-read", base_of(response.json()))
    run = ActivationRunResponse.model_validate_json(body)
    assert run.preview is not None and len(run.preview.feature_timeline) > LARGE["max_tokens"]
    stored = await db.fetchval(
        "SELECT feature_timeline::text FROM activation_run_previews WHERE request_id = 'big-read'"
    )
    assert len(stored) > 3 * json_parts.PART_CHUNK  # several chunks of timeline
    assert orjson.loads(body)["preview"]["feature_timeline"] == orjson.loads(stored)


async def test_a_pair_and_small_runs_read_the_same(client, db):
    steer = [{"feature_id": 7, "strength": 4.0}]
    pair = await client.post(
        RUN, json={"prompt": "pair", "steer": steer, "compare": True, "request_id": "pair-read"}
    )
    assert pair.status_code == 200, pair.text
    default_id = pair.json()["pair"]["request_id"]
    small = await client.post(RUN, json={"prompt": "small", "request_id": "small-read"})
    assert small.status_code == 200
    for request_id in ("pair-read", default_id, "small-read"):
        response = await client.get(f"/playground/activations/{request_id}")
        assert response.status_code == 200 and response.headers["content-type"] == (
            "application/json"
        )
        expected = await whole_answer(db, request_id, base_of(response.json()))
        assert response.content == expected, request_id


async def test_runs_without_a_timeline_and_errors_stay_whole(client, db, stub_states):
    no_sae = await client.post(
        RUN, json={"prompt": "x", "collect_activations": False, "request_id": "no-timeline"}
    )
    assert no_sae.status_code == 200
    read = await client.get("/playground/activations/no-timeline")
    assert read.status_code == 200 and read.json()["preview"] is None
    assert int(read.headers["content-length"]) == len(read.content)
    stub_states["sae"].mode = "error500"
    failed = await client.post(RUN, json={"prompt": "x", "request_id": "failed-read"})
    assert failed.status_code == 502
    read = await client.get("/playground/activations/failed-read")
    assert read.status_code == 200 and read.json()["status"] == "failed"
    assert int(read.headers["content-length"]) == len(read.content)
    missing = await client.get("/playground/activations/no-such-run")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert int(missing.headers["content-length"]) == len(missing.content)
    assert missing.json()["error"]["code"] == "not_found"
    stub_states["sae"].mode = "ok"
    await client.post(RUN, json={"prompt": "to prune", "request_id": "pruned-read"})
    await db.execute(
        "UPDATE activation_run_index SET pruned_at = now() WHERE request_id = 'pruned-read'"
    )
    gone = await client.get("/playground/activations/pruned-read")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "gone"
    assert int(gone.headers["content-length"]) == len(gone.content)


class Asgi:
    """Drives the app in-process (its lifespan included), keeping every ASGI message it sends."""

    def __init__(self, app) -> None:
        self.app = app

    async def get(self, path: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return sent


async def test_a_large_read_is_sent_in_parts(db_uri, stub_urls, stub_states):
    """At the ASGI level: the large run's answer leaves in several body messages, none of them
    holding the whole timeline, and they add up to the plain answer."""
    stub_states["engine"].output_len = LARGE["max_tokens"]
    stub_states["sae"].dense = True
    app = create_app(backend_settings(db_uri, stub_urls))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http:
            created = await http.post(RUN, json={**LARGE, "request_id": "parts-read"})
            assert created.status_code == 200, created.text
        messages = await Asgi(app).get("/playground/activations/parts-read")
    start, *bodies = messages
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert b"content-length" not in headers and b"x-request-id" in headers
    chunks = [m["body"] for m in bodies if m["body"]]
    assert all(m["type"] == "http.response.body" for m in bodies)
    assert bodies[-1].get("more_body", False) is False
    timeline = orjson.dumps(orjson.loads(b"".join(chunks))["preview"]["feature_timeline"])
    assert len(timeline) > 2 * json_parts.PART_CHUNK
    # head, at least three slices of the timeline, tail; none near the whole answer.
    assert len(chunks) >= 5
    # (The stub's text is ASCII: a slice of PART_CHUNK characters is PART_CHUNK bytes.)
    assert max(len(c) for c in chunks) <= json_parts.PART_CHUNK < len(b"".join(chunks)) / 3

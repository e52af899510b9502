"""A streamed run is the blocking run, chunked (issue 19): the same request streamed
(``Accept: text/event-stream``) and blocking, against the stub engine's event stream and the
stub SAE's incremental extraction, on the real backend and Postgres.

The streamed run's events come in order, its ``features`` chunks cover the sequence exactly
once, each asked of the SAE from where the previous chunk ended (an off-by-one in
``from_position`` is caught here, not only by its own guard), and what it stores equals what
the blocking run stores; an SAE answer one position short or long fails the streamed run as it
fails the blocking one: an ``error`` event naming the SAE and a failed run."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from common import sse

RUN = "/playground/activations/run"
EVENTS = {"accept": "text/event-stream"}
# Fields of a run that are its own: its id, its time, its timings, its trace.
PER_RUN = {"request_id", "created_at", "updated_at", "timings_ms", "trace_id", "owner_token",
           "permalink"}  # fmt: skip
# (``version``: the database's sequence over all runs' aggregates.)
PER_RUN_COLUMNS = {"request_id", "created_at", "updated_at", "engine_ms", "sae_ms", "total_ms",
                   "trace_id", "version"}  # fmt: skip
INDEX = "SELECT status, error_code, error_upstream, has_preview FROM activation_run_index "
INDEX += "WHERE request_id = $1"
# 40 output tokens: past FEATURE_CHUNK (16), so the answer's features come in more than one
# chunk whenever the engine's tokens outpace the SAE (and always in at least two: the prompt's,
# then the rest).
OUTPUT_LEN = 40


async def streamed(client, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    async with client.stream("POST", RUN, json=body, headers=EVENTS) as response:
        assert response.status_code == 200, await response.aread()
        async for event, data in sse.aparse(response.aiter_lines()):
            events.append((event, data))
    return events


def stream_calls(sae_calls: list[dict[str, Any]], which: str) -> list[dict[str, Any]]:
    """The SAE extract calls of one streamed run (its stream_id starts with the request id)."""
    return [c for c in sae_calls if (c.get("stream_id") or "").startswith(which + ".")]


async def stored(db, request_id: str) -> dict[str, Any]:
    """Everything stored about the run in the three run tables, less its per-run columns."""
    out: dict[str, Any] = {}
    for table in ("activation_run_index", "activation_run_previews", "activation_run_features"):
        rows = await db.fetch(f"SELECT * FROM {table} WHERE request_id = $1", request_id)
        out[table] = [{k: v for k, v in dict(r).items() if k not in PER_RUN_COLUMNS} for r in rows]
    return out


async def all_rows(client, request_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = await client.get(
            f"/playground/activations/{request_id}/rows", params={"limit": 500, "offset": len(rows)}
        )
        assert page.status_code == 200, page.text
        got = page.json()["rows"]
        rows += got
        if len(got) < 500:
            return rows


async def test_streamed_run_equals_the_blocking_run(client, db, stub_states):
    engine, sae = stub_states["engine"], stub_states["sae"]
    # The tokens a little apart, so that the feature worker sees the sequence grow.
    engine.output_len, engine.stream_gap_s = OUTPUT_LEN, 0.01
    body = {"prompt": "stream me as you would block me", "max_tokens": OUTPUT_LEN}

    events = await streamed(client, {**body, "request_id": "svb-streamed"})
    names = [name for name, _ in events]
    assert "error" not in names, events[-1]
    # Order: started, then tokens and features (the first token before any features), then done.
    assert names[0] == "started" and names[-1] == "done" and names.count("done") == 1
    assert names[1] == "token", names
    assert set(names[1:-1]) == {"token", "features"}, names
    assert names.count("token") == OUTPUT_LEN

    started = events[0][1]
    n_prompt = len(started["prompt_tokens"])
    tokens = [data for name, data in events if name == "token"]
    assert [t["position"] for t in tokens] == list(range(n_prompt, n_prompt + OUTPUT_LEN))
    assert [t["step"] for t in tokens] == list(range(OUTPUT_LEN))
    total = n_prompt + OUTPUT_LEN

    # The features chunks: contiguous, each starting where the previous ended, all positions
    # once, and the first one the prompt's alone.
    chunks = [
        [e["position"] for e in data["entries"]] for name, data in events if name == "features"
    ]
    assert len(chunks) >= 2, chunks
    assert chunks[0] == list(range(n_prompt)), chunks[0]
    end = 0
    for positions in chunks:
        assert positions == list(range(end, end + len(positions))), (end, positions)
        end += len(positions)
    assert end == total

    # What the SAE was asked: each chunk from the previous chunk's sequence length, over a
    # prefix of the run's sequence, the last one ending the stream at the whole sequence.
    done = events[-1][1]
    sequence = done["output"]["prompt_token_ids"] + done["output"]["token_ids"]
    calls = stream_calls(sae.calls, "svb-streamed")
    assert calls, sae.calls
    assert len({c["stream_id"] for c in calls}) == 1
    assert calls[0]["from_position"] == 0
    for previous, call in pairwise(calls):
        assert call["from_position"] == len(previous["token_ids"]), (previous, call)
    for call in calls:
        assert call["token_ids"] == sequence[: len(call["token_ids"])]
        assert call["output_start"] == n_prompt
    assert calls[-1]["stream_end"] is True and calls[-1]["token_ids"] == sequence
    assert not any(c["stream_end"] for c in calls[:-1])
    # The chunks the SAE answered with positions are the features events, one for one.
    answered = [c for c in calls if c["from_position"] < len(c["token_ids"])]
    assert [len(c["token_ids"]) - c["from_position"] for c in answered] == [
        len(positions) for positions in chunks
    ]

    blocking = await client.post(RUN, json={**body, "request_id": "svb-blocking"})
    assert blocking.status_code == 200, blocking.text

    # The stored runs are the same run: the view, every row, the top features and the tables.
    views = [(await client.get(f"/playground/activations/{rid}")).json()
             for rid in ("svb-streamed", "svb-blocking")]  # fmt: skip
    assert views[0]["status"] == "ok"
    streamed_view, blocking_view = ({k: v for k, v in view.items() if k not in PER_RUN}
                                    for view in views)  # fmt: skip
    assert streamed_view == blocking_view
    assert views[0]["output"]["token_ids"] == done["output"]["token_ids"]
    # The done event is the blocking answer, too.
    assert {k: v for k, v in done.items() if k not in PER_RUN} == {
        k: v for k, v in blocking.json().items() if k not in PER_RUN
    }
    streamed_rows = await all_rows(client, "svb-streamed")
    assert streamed_rows and streamed_rows == await all_rows(client, "svb-blocking")
    assert {r["token_position"] for r in streamed_rows} <= set(range(total))
    top = [(await client.get(f"/playground/activations/{rid}/top-features")).json()
           for rid in ("svb-streamed", "svb-blocking")]  # fmt: skip
    assert [{k: v for k, v in t.items() if k not in PER_RUN} for t in top] == [
        {k: v for k, v in top[1].items() if k not in PER_RUN}
    ] * 2
    tables = await stored(db, "svb-streamed")
    assert all(tables.values()), tables  # a row in each table
    assert tables == await stored(db, "svb-blocking")


@pytest.mark.parametrize("mode", ["short", "long"])
async def test_sae_one_position_off_fails_the_streamed_run_as_the_blocking_one(
    client, db, stub_states, mode
):
    stub_states["sae"].mode = mode
    body = {"prompt": f"count me streamed, {mode}", "max_tokens": 12}
    events = await streamed(client, {**body, "request_id": f"svb-{mode}-streamed"})
    names = [name for name, _ in events]
    assert names[0] == "started" and names[-1] == "error", names
    assert "done" not in names and "features" not in names, names
    error = events[-1][1]["error"]
    assert (error["code"], error["upstream"]) == ("upstream_error", "sae"), error
    assert "sae" in error["message"] and "positions" in error["message"], error

    blocking = await client.post(RUN, json={**body, "request_id": f"svb-{mode}-blocking"})
    assert blocking.status_code == 502, blocking.text
    assert blocking.json()["error"]["code"] == error["code"]
    assert blocking.json()["error"]["upstream"] == error["upstream"]
    for rid in (f"svb-{mode}-streamed", f"svb-{mode}-blocking"):
        row = await db.fetchrow(INDEX, rid)
        assert row is not None, rid
        assert dict(row) == {
            "status": "failed",
            "error_code": "upstream_error",
            "error_upstream": "sae",
            "has_preview": False,
        }, rid
        got = (await client.get(f"/playground/activations/{rid}")).json()
        assert got["status"] == "failed" and got["error"]["upstream"] == "sae", got

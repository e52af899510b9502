"""A deleted run stays deleted (issue 20, finding 5), on the real backend, real Postgres and
stub upstreams: DELETE during a streamed run, then the run finishes and is dropped, not written
back; the id stays its deleter's (a stranger's claim is 409), and only the deleter may reuse it."""

from __future__ import annotations

import httpx

from common import sse

RUN = "/playground/activations/run"
EVENTS = {"accept": "text/event-stream"}


async def test_delete_mid_run_then_the_finished_run_is_absent(client, db, stub_states):
    engine = stub_states["engine"]
    engine.output_len, engine.stream_gap_s = 20, 0.15
    rid = "tombstone-mid-run"
    body = {"prompt": "victim", "request_id": rid, "max_tokens": 20}
    events: list[str] = []
    async with client.stream("POST", RUN, json=body, headers=EVENTS) as response:
        assert response.status_code == 200
        async for event, data in sse.aparse(response.aiter_lines()):
            events.append(event)
            if event == "started":
                token = data["owner_token"]
                deleted = await client.delete(
                    f"/playground/activations/{rid}", headers={"X-Run-Owner": token}
                )
                assert deleted.status_code == 204, deleted.text
                # A stranger cannot take the freed id while the victim's run goes on.
                stranger = await client.post(RUN, json={"prompt": "mine now", "request_id": rid})
                assert stranger.status_code == 409, stranger.text
                assert stranger.json()["error"]["code"] == "run_owned"
    assert events[-1] == "done"  # the run finished ...
    # ... and was dropped: nothing written back, no index row, no preview.
    assert (
        await db.fetchval("SELECT count(*) FROM activation_run_index WHERE request_id = $1", rid)
        == 0
    )
    assert (await client.get(f"/playground/activations/{rid}")).status_code == 404
    engine.output_len, engine.stream_gap_s = None, 0.0
    # Only the deleter may use the id again.
    again = await client.post(
        RUN, json={"prompt": "again", "request_id": rid}, headers={"X-Run-Owner": token}
    )
    assert again.status_code == 200, again.text
    assert (await client.get(f"/playground/activations/{rid}")).status_code == 200


async def test_deleting_a_finished_run_keeps_its_id(client: httpx.AsyncClient):
    rid = "tombstone-finished"
    created = await client.post(RUN, json={"prompt": "x", "request_id": rid})
    token = created.json()["owner_token"]
    deleted = await client.delete(f"/playground/activations/{rid}", headers={"X-Run-Owner": token})
    assert deleted.status_code == 204
    stranger = await client.post(RUN, json={"prompt": "y", "request_id": rid})
    assert (
        stranger.status_code == 409
        and "deleted by its owner" in stranger.json()["error"]["message"]
    )

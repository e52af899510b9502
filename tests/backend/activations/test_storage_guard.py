"""Storage bounds (issue 20, finding 2), on the real backend, real Postgres and stub upstreams:
a maximum run (the largest the budget admits, every position at sae_top_k features) stores
under the per-run cap, its bytes count against its client's daily quota, which then refuses the
next run (429 quota_exceeded) while reads go on; a database over its size ceiling refuses new
runs with 507 storage_full and still serves reads."""

from __future__ import annotations

import httpx

from backend.app import create_app
from tests.backend.conftest import backend_settings
from tests.support.servers import serve_app

RUN = "/playground/activations/run"
CAP = 8 << 20  # the default playground_max_timeline_bytes
# 30 prompt tokens (the stub engine's count, chat template included: the budget asks the engine
# once the cheap bound, 20 bytes + 64 + 814, is over) + 814 = 844 positions x 128 features: the
# budget's largest run at sae_top_k 128 (844 x 9,937 bytes <= 8 MiB; 845 are over).
MAXIMUM = {"prompt": "m" * 20, "max_tokens": 814, "sae_top_k": 128}


async def stored_bytes(db, request_id: str) -> int:
    return await db.fetchval(
        "SELECT (SELECT pg_column_size(i.*) FROM activation_run_index i WHERE request_id = $1)"
        " + (SELECT pg_column_size(p.*) FROM activation_run_previews p WHERE request_id = $1)"
        " + coalesce((SELECT pg_column_size(f.*) FROM activation_run_features f"
        "             WHERE request_id = $1), 0)",
        request_id,
    )


async def test_maximum_run_under_the_cap_then_the_quota_refuses(db_uri, stub_urls, stub_states, db):
    stub_states["engine"].output_len = MAXIMUM["max_tokens"]
    stub_states["sae"].dense = True
    settings = backend_settings(
        db_uri,
        stub_urls,
        playground_client_daily_bytes=1 << 20,
        playground_sae_timeout_s=60.0,
        playground_db_timeout_s=60.0,
    )
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            over = await http.post(RUN, json={**MAXIMUM, "max_tokens": 815})
            assert over.status_code == 422 and over.json()["error"]["code"] == "timeline_too_large"
            first = await http.post(RUN, json={**MAXIMUM, "request_id": "maximum-run"})
            assert first.status_code == 200, first.text
            rows = first.json()["preview"]["row_count"]
            assert rows == 844 * 128 or rows > 100_000  # every position at top_k features
            size = await stored_bytes(db, "maximum-run")
            assert 0 < size <= CAP, size
            used = await db.fetchval("SELECT sum(bytes) FROM client_byte_usage")
            assert used >= 1 << 20  # counted against its client (over the 1 MiB quota)
            refused = await http.post(RUN, json={"prompt": "next"})
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "quota_exceeded"
            assert int(refused.headers["retry-after"]) >= 1
            # Reads are not part of the quota.
            assert (await http.get("/playground/activations/maximum-run")).status_code == 200


async def test_a_full_database_refuses_runs_and_serves_reads(db_uri, stub_urls):
    settings = backend_settings(db_uri, stub_urls, playground_max_database_bytes=1 << 20)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            refused = await http.post(RUN, json={"prompt": "x"})
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"]["code"] == "storage_full"
            assert (await http.get("/playground/activations/runs")).status_code == 200

"""GET /playground/activations/{request_id}/export (JSON and CSV) and /compare/export: the CSV
read back with Python's csv module equals the rows route's answer, the JSON's run equals the run
read; streamed, with a sane file name. Real Postgres, the backend over HTTP."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

import orjson

from backend.db.prune import prune_previews
from tests.backend.compare import runs
from tests.backend.compare.runs import BOS, seed, timeline

API = "/playground/activations"


async def all_rows(client, request_id: str) -> list[dict]:
    rows, offset = [], 0
    while True:
        response = await client.get(
            f"{API}/{request_id}/rows", params={"limit": 1000, "offset": offset}
        )
        assert response.status_code == 200, response.text
        page = response.json()["rows"]
        rows += page
        offset += len(page)
        if offset >= response.json()["total"]:
            return rows


def typed(line: dict) -> dict:
    """A CSV line as the rows route's item (plus the two extra columns checked apart)."""
    return {
        "step": int(line["step"]) if line["step"] else None,
        "token_position": int(line["token_position"]),
        "feature_id": int(line["feature_id"]),
        "activation_value": float(line["activation_value"]),
        "rank": int(line["rank"]),
        "token_id": int(line["token_id"]),
        "token": line["token"],
    }


async def download(client, path: str, **params):
    async with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200, await response.aread()
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        return response, body


async def big_run(db, request_id: str) -> runs.Seeded:
    rng = random.Random(8)
    ids = [BOS] + [rng.randrange(100, 160) for _ in range(1499)]
    entries = timeline(ids, 700, seed=9, pool=range(5000), top_k=20)
    return await seed(db, request_id, entries, 700)


async def test_csv_round_trip_equals_the_rows_route(client, db):
    run = await big_run(db, "exp:big.1")
    response, body = await download(client, f"{API}/exp:big.1/export", format="csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="activations-exp_big.1.csv"'
    )
    assert response.headers.get("transfer-encoding") == "chunked"  # streamed, no length
    assert "content-length" not in response.headers
    reader = csv.DictReader(io.StringIO(body.decode(), newline=""))
    assert reader.fieldnames == [
        "token_position", "step", "segment", "special", "token_id", "token", "rank",
        "feature_id", "activation_value",
    ]  # fmt: skip
    lines = list(reader)
    rows = await all_rows(client, "exp:big.1")
    assert len(rows) > 10_000
    assert [typed(line) for line in lines] == rows
    for line in lines:
        entry = run.entries[int(line["token_position"])]
        assert line["segment"] == entry["segment"]
        assert line["special"] == ("true" if entry["special"] else "false")


async def test_json_equals_the_run_read(client, db):
    await big_run(db, "exp-json")
    response, body = await download(client, f"{API}/exp-json/export")
    assert response.headers["content-type"].startswith("application/json")
    assert 'filename="activations-exp-json.json"' in response.headers["content-disposition"]
    exported = orjson.loads(body)
    assert exported["run"] == (await client.get(f"{API}/exp-json")).json()
    assert exported["rows"] == await all_rows(client, "exp-json")
    top = await client.get(f"{API}/exp-json/top-features", params={"limit": 1000})
    assert exported["top_features"] == top.json()["top_features"]


async def test_hostile_tokens_and_small_runs(client, db):
    """Every token text of the word list (quotes, commas, CR/LF, empty) reads back as stored."""
    ids = [BOS, *range(100, 100 + len(runs.WORDS))]
    entries = timeline(ids, 3, seed=2, top_k=3)
    entries[1]["features"] = []  # a position without features has no line
    await seed(db, "exp-small", entries, 3)
    _, body = await download(client, f"{API}/exp-small/export", format="csv")
    lines = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert [typed(line) for line in lines] == await all_rows(client, "exp-small")
    assert {line["token"] for line in lines} <= {e["token"] for e in entries}
    assert 1 not in {int(line["token_position"]) for line in lines}


async def test_failed_pruned_unknown(client, db):
    await runs.seed_failed(db, "exp-failed")
    _, body = await download(client, f"{API}/exp-failed/export")
    exported = orjson.loads(body)
    assert exported["run"] == (await client.get(f"{API}/exp-failed")).json()
    assert exported["rows"] == [] and exported["top_features"] == []
    _, body = await download(client, f"{API}/exp-failed/export", format="csv")
    assert body.decode().splitlines() == [
        "token_position,step,segment,special,token_id,token,rank,feature_id,activation_value"
    ]
    await seed(db, "exp-old", timeline([BOS, 101], 1, seed=1), 1, age=timedelta(days=30))
    await prune_previews(db, timedelta(days=7))
    for run_id, status in (("exp-old", 410), ("exp-nope", 404)):
        for fmt in ("json", "csv"):
            response = await client.get(f"{API}/{run_id}/export", params={"format": fmt})
            assert response.status_code == status
            assert run_id in response.json()["error"]["message"]
    response = await client.get(f"{API}/exp-failed/export", params={"format": "xml"})
    assert response.status_code == 422


async def test_comparison_csv_equals_the_comparison(client, db):
    await big_run(db, "exp-cmp-a")
    ids = [BOS] + [100 + i % 50 for i in range(799)]
    await seed(db, "exp-cmp-b", timeline(ids, 400, seed=3, pool=range(5000), top_k=20), 400)
    params = {"a": "exp-cmp-a", "b": "exp-cmp-b", "segment": "output"}
    response, body = await download(client, f"{API}/compare/export", **params)
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        'filename="compare-exp-cmp-a-vs-exp-cmp-b.csv"' in response.headers["content-disposition"]
    )
    lines = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    answer = (await client.get(f"{API}/compare", params=params | {"limit": 1000})).json()
    assert len(lines) == answer["total_features"] > 1000  # unlimited, unlike the JSON route
    for line, item in zip(lines, answer["features"], strict=False):
        assert int(line["feature_id"]) == item["feature_id"]
        assert (line["label"] or None) == item["label"]
        for side in ("a", "b"):
            assert float(line[f"{side}_max"]) == item[side]["max"]
            assert float(line[f"{side}_mean"]) == item[side]["mean"]
            assert int(line[f"{side}_hits"]) == item[side]["hits"]
        assert float(line["delta_max"]) == item["delta_max"]
        assert float(line["delta_mean"]) == item["delta_mean"]
    response = await client.get(f"{API}/compare/export", params={"a": "exp-cmp-a", "b": "x-no"})
    assert response.status_code == 404

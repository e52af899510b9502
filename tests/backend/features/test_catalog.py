"""The SAE catalog and label cache: filled from the SAE service (a real HTTP stub) once, read
from Postgres after; label search; `playground import-labels`."""

from __future__ import annotations

import asyncio
import gzip
import sys

import asyncpg
import httpx
import orjson

from backend.features.catalog import SaeCatalog
from backend.features.labels_file import read_labels
from backend.features.protocol import FeatureResponse, LabelsResponse, SearchResponse
from backend.upstreams.client import JsonUpstream
from backend.upstreams.sae import SaeClient
from tests.backend import stubs
from tests.backend.conftest import backend_settings
from tests.backend.features import brute
from tests.support.databases import create_database
from tests.support.servers import REPO_ROOT

SAE = "/playground/features/llama_scope_lxr_8x/16"


async def test_labels_are_cached_from_the_bulk_endpoint(client, stub_states):
    first = await client.get(f"{SAE}/labels")
    assert first.status_code == 200, first.text
    body = LabelsResponse.model_validate(first.json())
    assert body.d_sae == 32768
    assert body.labels == {str(i): stubs.stub_label(i) for i in range(stubs.N_FEATURES)}

    stub_states["sae"].lookups.clear()
    some = await client.get(f"{SAE}/labels", params={"ids": "1,2,39,40,30000"})
    assert some.json()["labels"] == {"1": stubs.stub_label(1), "2": stubs.stub_label(2),
                                     "39": stubs.stub_label(39)}  # fmt: skip
    assert stub_states["sae"].lookups == []  # answered from Postgres

    for bad in ("1,,2", "x", "-1"):
        assert (await client.get(f"{SAE}/labels", params={"ids": bad})).status_code == 422
    assert (await client.get("/playground/features/nope/16/labels")).status_code == 404


async def test_feature_page_label_and_examples(client, stub_states):
    page = FeatureResponse.model_validate((await client.get(f"{SAE}/3")).json())
    assert page.label == stubs.stub_label(3)
    assert page.examples and page.examples[0]["tokens"] == ["the", " stub", " word"]
    assert "/features/llama_scope_lxr_8x/16/3" in stub_states["sae"].lookups

    stub_states["sae"].lookups.clear()
    again = FeatureResponse.model_validate((await client.get(f"{SAE}/3")).json())
    assert again.examples == page.examples and again.label == page.label
    assert stub_states["sae"].lookups == []  # examples cached too

    # A feature the SAE has no examples for answers [] (and the page still works).
    assert (await client.get(f"{SAE}/30000")).json()["examples"] == []


async def test_label_search(client, db):
    for i in range(6):
        body = {"prompt": f"search prompt {i} sky", "request_id": f"search-{i}", "max_tokens": 8}
        assert (await client.post("/playground/activations/run", json=body)).status_code == 200
    runs = await brute.stored_runs(db)

    async def search(**params):
        response = await client.get("/playground/features/search", params=params)
        assert response.status_code == 200, response.text
        return SearchResponse.model_validate(response.json()).results

    wake = await search(q="WAK")
    assert {r.feature_id for r in wake} == {i for i in range(stubs.N_FEATURES) if i % 5 == 0}
    for r in wake:
        assert r.label == stubs.stub_label(r.feature_id)
        assert r.runs_fired == brute.expected(runs, r.sae_id, r.layer, r.feature_id).runs_fired
    fired = [r.runs_fired for r in wake]
    assert fired == sorted(fired, reverse=True)

    both = await search(q="stub log", limit=3)
    assert len(both) == 3 and all(r.feature_id % 5 == 1 for r in both)
    by_id = await search(q="7", sae_id="llama_scope_lxr_8x", layer=16)
    assert by_id[0].feature_id == 7
    assert await search(q="!!! ???") == []
    assert await search(q="zebra") == []
    # A word of a feature's examples finds it (migration 0022); the label is what is shown.
    giraffe = await search(q="savan", sae_id="llama_scope_lxr_8x", layer=16)
    assert [(r.feature_id, r.label) for r in giraffe] == [(3, stubs.stub_label(3))]
    assert await search(q="wake", sae_id="other_sae") == []
    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {"q": "a", "layer": -1}):
        response = await client.get("/playground/features/search", params=params)
        assert response.status_code == 422, params


async def test_import_labels_cli(client, db, db_uri, tmp_path):
    records = [
        {"modelId": "llama3.1-8b", "layer": "16-llamascope-res-32k", "index": "3",
         "description": "imported three"},
        {"index": "3", "description": "a second explanation (ignored)"},
        {"index": "5", "description": "imported five"},
        {"index": "40000", "description": "past d_sae (dropped)"},
    ]  # fmt: skip
    path = tmp_path / "explanations.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(r) for r in records)))
    assert read_labels(path) == {
        3: "imported three",
        5: "imported five",
        40000: "past d_sae (dropped)",
    }

    async def cli(*args):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "playground.cli", "import-labels", *args,
            "--database-url", db_uri, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode, out.decode()

    code, out = await cli(str(path), "--sae-id", "llama_scope_lxr_8x", "--layer", "16")
    assert code == 0 and "imported 2 labels" in out, out
    labels = (await client.get(f"{SAE}/labels")).json()["labels"]
    assert labels == {"3": "imported three", "5": "imported five"}
    source = await db.fetchval(
        "SELECT labels_source FROM feature_saes WHERE sae_id = 'llama_scope_lxr_8x'"
    )
    assert source == "import"
    found = (await client.get("/playground/features/search", params={"q": "imported"})).json()
    assert {r["feature_id"] for r in found["results"]} == {3, 5}

    # An SAE the SAE service does not serve: its d_sae from the command line.
    other = tmp_path / "labels.json"
    other.write_bytes(orjson.dumps({"0": "zero", "7": "seven"}))
    code, out = await cli(str(other), "--sae-id", "offline_sae", "--layer", "2", "--d-sae", "64")
    assert code == 0 and "imported 2 labels" in out
    page = (await client.get("/playground/features/offline_sae/2/7")).json()
    assert page["label"] == "seven" and page["density"]["runs_total"] == 0
    assert (await client.get("/playground/features/offline_sae/2/64")).status_code == 422

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, out = await cli(str(bad), "--sae-id", "x", "--layer", "1")
    assert code == 2 and "cannot read" in out


async def test_service_labels_never_replace_imported_ones(db_uri, stub_urls):
    """A forced refresh reloads the SAE service's labels only where none were imported."""
    pool = await asyncpg.create_pool(db_uri, min_size=1, max_size=2)
    async with httpx.AsyncClient(base_url=stub_urls["sae"]) as http:
        catalog = SaeCatalog(backend_settings(db_uri, stub_urls), pool, SaeClient(
            JsonUpstream("sae", http)))  # fmt: skip
        await catalog.refresh(force=True)
        _, labels = await catalog.labels("llama_scope_lxr_8x", 16, None)
    await pool.close()
    assert labels == {3: "imported three", 5: "imported five"}


async def test_an_sae_service_without_labels(pg_uri, stub_urls, stub_states):
    """An older SAE service: no has_labels, no labels route (404): d_sae still cached."""
    uri = create_database(pg_uri, migrate=True)
    stub_states["sae"].mode = "no_labels"
    pool = await asyncpg.create_pool(uri, min_size=1, max_size=2)
    async with httpx.AsyncClient(base_url=stub_urls["sae"]) as http:
        catalog = SaeCatalog(backend_settings(uri, stub_urls), pool, SaeClient(
            JsonUpstream("sae", http)))  # fmt: skip
        entry, labels = await catalog.labels("llama_scope_lxr_8x", 16, None)
    await pool.close()
    assert entry.d_sae == 32768 and not entry.has_labels and labels == {}

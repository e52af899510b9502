"""The feature page and the runs listing filtered by a feature, against a brute force over the
stored timelines: with every run still queued, partly folded, and fully folded; after re-runs,
failures, prune and delete. Real Postgres, stub upstreams over HTTP.

Each test has a database and a backend of its own and builds the runs it needs (fixtures
``queued_runs``/``folded_runs``): any one of them runs alone (``-k``), in any order."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from backend.activations.protocol import RunsPage
from backend.app import create_app
from backend.db.prune import prune_previews
from backend.features import fold
from backend.features.protocol import FeatureResponse
from tests.backend.conftest import backend_settings
from tests.backend.features import brute
from tests.support.databases import create_database
from tests.support.servers import serve_app

SAE_ID, LAYER = "llama_scope_lxr_8x", 16
WORDS = ["sky", "blue", "why", "light", "sea", "ocean", "red", "sun", "night", "star"]


def prompt(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 5)) + f" #{i}"


# The runs most tests start from: 18, enough for boards of 4 to fill, set floors and refill.
RUN_IDS = [f"run-{i:02d}" for i in range(18)]


@pytest.fixture
def db_uri(pg_uri) -> str:
    """A fresh database per test (overrides the module's): no test sees another's runs."""
    return create_database(pg_uri, prefix="explorer", migrate=True)


@pytest.fixture
def backend_url(db_uri, stub_urls):
    """The backend on this test's database, its background fold off (as features/conftest.py)."""
    settings = backend_settings(db_uri, stub_urls, playground_feature_fold=False)
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture
def owners() -> dict[str, str]:
    """Owner tokens of the runs this test made: a re-run of an id needs its owner's token."""
    return {}


@pytest.fixture
async def queued_runs(client, owners) -> list[str]:
    """RUN_IDS stored, every one still queued for the fold."""
    await make_runs(client, owners, RUN_IDS)
    return RUN_IDS


@pytest.fixture
async def folded_runs(queued_runs, pool) -> list[str]:
    """RUN_IDS stored and folded."""
    assert await fold.fold_all(pool) == len(queued_runs)
    return queued_runs


async def make_runs(client, owners: dict[str, str], ids, *, offset=0) -> None:
    for n, request_id in enumerate(ids):
        owner = owners.get(request_id)
        response = await client.post(
            "/playground/activations/run",
            json={"prompt": prompt(n + offset), "request_id": request_id, "max_tokens": 12},
            headers={"X-Run-Owner": owner} if owner else {},
        )
        assert response.status_code == 200, response.text
        if response.json()["owner_token"]:
            owners[request_id] = response.json()["owner_token"]


async def feature_page(client, feature_id, top=10) -> FeatureResponse:
    response = await client.get(
        f"/playground/features/{SAE_ID}/{LAYER}/{feature_id}", params={"top": top}
    )
    assert response.status_code == 200, response.text
    return FeatureResponse.model_validate(response.json())


async def listing(client, feature_id, limit=3) -> list[tuple[float, str]]:
    seen, cursor = [], None
    for _ in range(100):
        params = {"sae_id": SAE_ID, "sae_layer": LAYER, "feature_id": feature_id, "limit": limit}
        response = await client.get(
            "/playground/activations/runs", params=params | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        page = RunsPage.model_validate(response.json())
        assert len(page.runs) <= limit
        seen += [(r.feature_max_activation, r.request_id) for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the listing never ended")


async def check(client, db, features=None, *, listing_limit=3) -> int:
    """Every feature page and listing equals the brute force; answers how many were checked."""
    runs = await brute.stored_runs(db)
    fired = sorted(brute.fired_features(runs))
    for feature_id in features if features is not None else fired:
        exp = brute.expected(runs, SAE_ID, LAYER, feature_id)
        page = await feature_page(client, feature_id)
        assert page.complete
        assert page.density.model_dump() == {
            "runs_fired": exp.runs_fired,
            "runs_total": exp.runs_total,
            "positions_fired": exp.positions_fired,
            "positions_total": exp.positions_total,
        }, feature_id
        assert page.histogram.counts == exp.hist, feature_id
        got = [(t.max_activation, t.request_id, t.max_position) for t in page.top_runs]
        assert got == exp.ranked[:10], feature_id
        for top in page.top_runs:
            at_max = [w for w in top.window if w.position == top.max_position]
            assert len(at_max) == 1 and at_max[0].activation == pytest.approx(
                top.max_activation, rel=1e-6
            )
        assert await listing(client, feature_id, listing_limit) == [
            (a, r) for a, r, _ in exp.ranked
        ]
    return len(features) if features is not None else len(fired)


async def test_pages_match_brute_force_queued_and_folded(client, db, pool, queued_runs):
    assert (await db.fetchval("SELECT count(*) FROM feature_pending_runs")) == 18
    assert await check(client, db) > 20  # every run still queued: answers come from the queue

    async with pool.acquire() as conn:
        assert (await fold.fold_batch(conn, 7)).runs == 7
    await check(client, db)  # partly folded

    assert await fold.fold_all(pool) == 11
    checked = await check(client, db)  # fully folded: boards of 4, the rest from members
    full = await db.fetchval("SELECT count(*) FROM feature_stats WHERE top_full")
    assert full > checked // 2, "small boards should have filled and set floors"
    assert await db.fetchval("SELECT max(top_count) FROM feature_stats") == 4


async def test_rerun_replaces_the_runs_contribution(client, db, pool, owners, folded_runs):
    before = {r.request_id: r.timeline for r in await brute.stored_runs(db)}
    # New prompts for old ids: some re-runs folded before the next, some still queued.
    await make_runs(client, owners, ["run-03", "run-11"], offset=40)
    await fold.fold_all(pool)
    await make_runs(client, owners, ["run-05", "run-11"], offset=50)
    after = {r.request_id: r.timeline for r in await brute.stored_runs(db)}
    assert after["run-11"] != before["run-11"]
    removals = await db.fetchval("SELECT count(*) FROM feature_pending_removals")
    assert removals == 2  # run-05's and run-11's folded versions: to be taken back
    await check(client, db)
    await fold.fold_all(pool)
    await check(client, db)
    stale = await db.fetchval(
        "SELECT count(*) FROM feature_top_runs t LEFT JOIN activation_run_features a"
        " ON a.request_id = t.request_id AND a.version = t.version WHERE a.request_id IS NULL"
    )
    assert stale == 0


async def test_failures_prune_and_deletes_remove_runs(
    client, db, pool, stub_states, owners, folded_runs
):
    # A failed re-run never replaces a success: run-03 keeps its features.
    stub_states["sae"].mode = "error500"
    response = await client.post(
        "/playground/activations/run",
        json={"prompt": "x", "request_id": "run-03"},
        headers={"X-Run-Owner": owners["run-03"]},
    )
    assert response.status_code == 502
    stub_states["sae"].mode = "ok"
    # Its owner deletes a run (DELETE with X-Run-Owner): the features go with it.
    response = await client.delete(
        "/playground/activations/run-00", headers={"X-Run-Owner": owners["run-00"]}
    )
    assert response.status_code == 204, response.text
    # Prune (the query `playground prune` runs) takes three more; a run is deleted outright.
    await db.execute(
        "UPDATE activation_run_previews SET created_at = now() - interval '30 days'"
        " WHERE request_id IN ('run-01', 'run-02', 'run-04')"
    )
    async with pool.acquire() as conn:
        assert (await prune_previews(conn, timedelta(days=7))).pruned == 3
    await db.execute("DELETE FROM activation_run_index WHERE request_id = 'run-06'")

    gone = {"run-00", "run-01", "run-02", "run-04", "run-06"}
    runs = await brute.stored_runs(db)
    assert not gone & {r.request_id for r in runs}
    assert "run-03" in {r.request_id for r in runs}
    await check(client, db)  # removals still queued: the gone runs have already vanished
    await fold.fold_all(pool)
    await check(client, db)
    assert not gone & {
        r["request_id"] for r in await db.fetch("SELECT request_id FROM feature_top_runs")
    }
    assert not gone & {
        r["request_id"] for r in await db.fetch("SELECT request_id FROM feature_run_members")
    }
    # Deletions thinned full boards below the low-water mark and the fold refilled them.
    thin = await db.fetchval(
        "SELECT count(*) FROM feature_stats WHERE top_full AND top_count < $1", 2
    )
    assert thin == 0


async def test_never_fired_unknown_sae_and_bounds(client, db, folded_runs):
    quiet = await feature_page(client, 12345)
    assert quiet.density.runs_fired == 0 and quiet.density.positions_fired == 0
    assert quiet.density.runs_total > 0
    assert quiet.top_runs == [] and sum(quiet.histogram.counts) == 0
    assert len(quiet.histogram.edges) == len(quiet.histogram.counts) + 1
    assert quiet.links.neuronpedia == (
        "https://www.neuronpedia.org/llama3.1-8b/16-llamascope-res-32k/12345"
    )
    assert (await listing(client, 12345)) == []

    for path, status, code in [
        (f"/playground/features/{SAE_ID}/{LAYER}/32768", 422, "feature_out_of_range"),
        (f"/playground/features/no_such_sae/{LAYER}/1", 404, "sae_not_found"),
        (f"/playground/features/{SAE_ID}/3/1", 404, "sae_not_found"),
        (f"/playground/features/{SAE_ID}/{LAYER}/-1", 422, "validation_error"),
        (f"/playground/features/{SAE_ID}/999/1", 422, "validation_error"),
    ]:
        response = await client.get(path)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["code"] == code

    runs = "/playground/activations/runs"
    filt = {"sae_id": SAE_ID, "sae_layer": LAYER, "feature_id": 3}
    plain = (await client.get(runs, params={"limit": 1})).json()["next_cursor"]
    for params in [
        {"feature_id": 3},  # not all three
        filt | {"status": "ok"},
        filt | {"limit": 101},
        filt | {"cursor": plain},  # the plain listing's cursor is not this listing's
        filt | {"cursor": "garbage!"},
        filt | {"feature_id": 40000},
    ]:
        response = await client.get(runs, params=params)
        assert response.status_code == 422, (params, response.text)


async def test_rerun_while_its_version_is_being_folded(client, db, db_uri, pool, owners):
    """A write never waits for a fold: with the old version's queue row locked (as a fold
    holds it), the re-run goes through and queues the old version's removal. If that fold then
    rolls back, the pair cancels out; answers stay exact throughout."""
    await make_runs(client, owners, ["busy-1"], offset=70)
    version = await db.fetchval(
        "SELECT version FROM activation_run_features WHERE request_id = 'busy-1'"
    )
    folder = await asyncpg.connect(db_uri)
    try:
        tx = folder.transaction()
        await tx.start()
        await folder.execute(
            "SELECT 1 FROM feature_pending_runs WHERE request_id = 'busy-1' FOR UPDATE"
        )
        await asyncio.wait_for(make_runs(client, owners, ["busy-1"], offset=71), timeout=30)
        await tx.rollback()
    finally:
        await folder.close()
    pair = await db.fetchval(
        "SELECT count(*) FROM feature_pending_removals r JOIN feature_pending_runs q"
        " USING (request_id, version) WHERE request_id = 'busy-1' AND version = $1",
        version,
    )
    assert pair == 1
    await check(client, db)
    await fold.fold_all(pool)
    assert (await db.fetchval("SELECT count(*) FROM feature_pending_removals")) == 0
    await check(client, db)

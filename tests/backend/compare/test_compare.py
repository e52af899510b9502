"""GET /playground/activations/compare against a brute force over both stored JSON timelines:
random runs, identical runs, swapped runs, disjoint features, different lengths; the alignment
of identical prompts with different answers, an inserted word, an empty output; the errors.
Real Postgres, the backend over HTTP; runs written through the run path's row builders."""

from __future__ import annotations

import difflib
import random
from datetime import timedelta

import pytest

from backend.activations.compare_protocol import CompareResponse
from backend.db.prune import prune_previews
from tests.backend.compare import runs
from tests.backend.compare.runs import BOS, seed, timeline

URL = "/playground/activations/compare"


async def compare(client, a: str, b: str, **params) -> dict:
    response = await client.get(URL, params={"a": a, "b": b, "limit": 1000, **params})
    assert response.status_code == 200, response.text
    CompareResponse.model_validate(response.json())
    return response.json()


def check_features(body: dict, expected: dict[int, dict]) -> None:
    got = {f["feature_id"]: f for f in body["features"]}
    assert set(got) == set(expected)
    assert body["total_features"] == len(expected)
    for fid, exp in expected.items():
        item = got[fid]
        for side in ("a", "b"):
            assert item[side]["hits"] == exp[side]["hits"], fid
            assert item[side]["max"] == exp[side]["max"], fid
            assert item[side]["mean"] == pytest.approx(exp[side]["mean"], rel=1e-12), fid
        assert item["delta_max"] == exp["delta_max"], fid
        assert item["delta_mean"] == pytest.approx(exp["delta_mean"], rel=1e-9, abs=1e-12), fid
    keys = [
        (-abs(f["delta_max"]), -abs(f["delta_mean"]), f["feature_id"]) for f in body["features"]
    ]
    assert keys == sorted(keys), "not sorted by the largest absolute change"


def check_opcodes(body: dict, a_ids: list[int], b_ids: list[int]) -> list[tuple[int, int]]:
    """The opcodes cover both sequences in order, equal spans hold equal tokens; answers the
    aligned pairs."""
    al = body["alignment"]
    at_a = at_b = 0
    pairs = []
    for op in al["opcodes"]:
        assert (op["a_start"], op["b_start"]) == (at_a, at_b)
        at_a, at_b = op["a_end"], op["b_end"]
        if op["tag"] == "equal":
            assert a_ids[op["a_start"] : op["a_end"]] == b_ids[op["b_start"] : op["b_end"]]
            pairs += zip(
                range(op["a_start"], op["a_end"]), range(op["b_start"], op["b_end"]), strict=True
            )
    assert (at_a, at_b) == (len(a_ids), len(b_ids))
    prefix = al["prefix"]
    assert a_ids[:prefix] == b_ids[:prefix]
    assert prefix == min(len(a_ids), len(b_ids)) or a_ids[prefix] != b_ids[prefix]
    return pairs


def check_alignment(body, a: runs.Seeded, b: runs.Seeded, threshold=1.0, segment="all",
                    include_special=False) -> None:  # fmt: skip
    a_ids = [e["token_id"] for e in a.entries]
    b_ids = [e["token_id"] for e in b.entries]
    pairs = check_opcodes(body, a_ids, b_ids)
    al = body["alignment"]
    assert al["a_tokens"] == [e["token"] for e in a.entries]
    assert al["b_tokens"] == [e["token"] for e in b.entries]
    assert (al["a_output_start"], al["b_output_start"]) == (a.output_start, b.output_start)
    kept = [
        (pa, pb)
        for pa, pb in pairs
        if runs.counted(a.entries[pa], segment, include_special)
        and runs.counted(b.entries[pb], segment, include_special)
    ]
    assert not al["truncated"]
    assert al["positions"] == runs.expected_changes(a.entries, b.entries, kept, threshold)


async def test_random_runs_match_brute_force(client, db):
    rng = random.Random(23)
    seeded = []
    for i in range(6):
        n = rng.randint(5, 40)
        ids = [BOS] + [rng.randrange(100, 130) for _ in range(n - 1)]
        seeded.append(await seed(db, f"rnd-{i}", timeline(ids, n // 2, seed=i), n // 2))
    for a, b in [(seeded[0], seeded[1]), (seeded[2], seeded[3]), (seeded[4], seeded[5])]:
        stored_a = await runs.stored_timeline(db, a.request_id)
        stored_b = await runs.stored_timeline(db, b.request_id)
        for segment in ("all", "prompt", "output"):
            for special in (False, True):
                params = {"segment": segment, "include_special": str(special).lower()}
                body = await compare(client, a.request_id, b.request_id, **params)
                check_features(body, runs.expected_features(stored_a, stored_b, segment, special))
                check_alignment(body, a, b, segment=segment, include_special=special)
                assert (body["a"]["request_id"], body["b"]["request_id"]) == (
                    a.request_id,
                    b.request_id,
                )
        # The first ``limit`` are the head of the full list.
        full = await compare(client, a.request_id, b.request_id)
        head = await client.get(URL, params={"a": a.request_id, "b": b.request_id, "limit": 5})
        assert head.json()["features"] == full["features"][:5]
        assert head.json()["total_features"] == full["total_features"]


async def test_identical_runs_have_zero_deltas(client, db):
    ids = [BOS, 101, 102, 103, 104, 105, 106]
    entries = timeline(ids, 4, seed=7)
    await seed(db, "same-a", entries, 4)
    await seed(db, "same-b", entries, 4)
    for pair in (("same-a", "same-b"), ("same-a", "same-a")):
        body = await compare(client, *pair, include_special="true")
        assert body["features"] and all(
            f["delta_max"] == 0 and f["delta_mean"] == 0 and f["a"] == f["b"]
            for f in body["features"]
        )
        assert [f["feature_id"] for f in body["features"]] == sorted(
            f["feature_id"] for f in body["features"]
        )
        al = body["alignment"]
        assert al["opcodes"] == [
            {"tag": "equal", "a_start": 0, "a_end": 7, "b_start": 0, "b_end": 7}
        ]
        assert al["prefix"] == 7 and al["positions"] == []


async def test_swapped_runs_negate_the_deltas(client, db):
    ids_a = [BOS, 110, 111, 112, 113, 114, 115, 116]
    ids_b = [BOS, 110, 111, 120, 113, 114, 121, 122, 123]
    await seed(db, "swap-a", timeline(ids_a, 3, seed=11), 3)
    await seed(db, "swap-b", timeline(ids_b, 3, seed=12), 3)
    ab = await compare(client, "swap-a", "swap-b")
    ba = await compare(client, "swap-b", "swap-a")
    assert [f["feature_id"] for f in ab["features"]] == [f["feature_id"] for f in ba["features"]]
    for x, y in zip(ab["features"], ba["features"], strict=True):
        assert (x["a"], x["b"]) == (y["b"], y["a"])
        assert x["delta_max"] == -y["delta_max"] and x["delta_mean"] == -y["delta_mean"]
    flip = {"a_start": "b_start", "a_end": "b_end", "b_start": "a_start", "b_end": "a_end"}
    swapped_tag = {"insert": "delete", "delete": "insert"}
    assert [
        {flip.get(k, k): v for k, v in op.items()} | {"tag": swapped_tag.get(op["tag"], op["tag"])}
        for op in ab["alignment"]["opcodes"]
    ] == ba["alignment"]["opcodes"]


async def test_disjoint_features(client, db):
    ids = [BOS, 101, 102, 103, 104, 105]
    a = await seed(db, "disj-a", timeline(ids, 3, seed=1, pool=range(0, 50)), 3)
    b = await seed(db, "disj-b", timeline(ids, 3, seed=2, pool=range(1000, 1050)), 3)
    body = await compare(client, a.request_id, b.request_id)
    assert body["features"]
    for f in body["features"]:
        only_a = f["feature_id"] < 1000
        assert (f["b"] if only_a else f["a"]) == {"max": 0.0, "mean": 0.0, "hits": 0}
        assert f["delta_max"] == (-f["a"]["max"] if only_a else f["b"]["max"])
    check_features(body, runs.expected_features(a.entries, b.entries))
    # Same tokens everywhere: every aligned position lists a's features gone, b's come.
    check_alignment(body, a, b)
    assert all(not p["changed"] for p in body["alignment"]["positions"])


async def test_different_lengths(client, db):
    rng = random.Random(5)
    ids_a = [BOS] + [rng.randrange(100, 110) for _ in range(11)]
    ids_b = ids_a[:6] + [rng.randrange(100, 110) for _ in range(30)]
    a = await seed(db, "len-a", timeline(ids_a, 6, seed=3), 6)
    b = await seed(db, "len-b", timeline(ids_b, 6, seed=4), 6)
    body = await compare(client, a.request_id, b.request_id, threshold=0.5)
    check_features(body, runs.expected_features(a.entries, b.entries))
    check_alignment(body, a, b, threshold=0.5)
    assert body["alignment"]["prefix"] >= 6


async def test_same_prompt_different_answers(client, db):
    prompt = [BOS, 101, 102, 103, 104]
    a_entries = timeline([*prompt, 201, 202, 203, 204], 5, seed=30)
    b_entries = timeline([*prompt, 301, 302, 303], 5, seed=31)
    b_entries[:5] = a_entries[:5]  # one prompt: its positions read the same features
    # ...except that one feature of b's last prompt position moves past the threshold.
    moved = dict(b_entries[4], features=[dict(f) for f in b_entries[4]["features"]])
    b_entries[4] = moved
    if not moved["features"]:
        moved["features"] = [{"feature_id": 7, "activation": 1.0}]
        a_entries[4] = dict(a_entries[4], features=[{"feature_id": 7, "activation": 3.0}])
    else:
        moved["features"][0]["activation"] += 2.5
    a = await seed(db, "ans-a", a_entries, 5)
    b = await seed(db, "ans-b", b_entries, 5)
    body = await compare(client, "ans-a", "ans-b")
    al = body["alignment"]
    assert al["prefix"] == 5
    assert al["opcodes"] == [
        {"tag": "equal", "a_start": 0, "a_end": 5, "b_start": 0, "b_end": 5},
        {"tag": "replace", "a_start": 5, "a_end": 9, "b_start": 5, "b_end": 8},
    ]
    assert [p["a_position"] for p in al["positions"]] == [4]
    assert [c["feature_id"] for c in al["positions"][0]["changed"]] == [
        moved["features"][0]["feature_id"]
    ]
    check_alignment(body, a, b)


async def test_inserted_word_in_the_prompt(client, db):
    ids_a = [BOS, 101, 102, 103, 104, 105, 106]
    ids_b = [BOS, 101, 102, 999, 103, 104, 105, 106]
    a_entries = timeline(ids_a, 5, seed=40)
    # b: the same features at the same tokens, shifted by the inserted one.
    b_entries = [dict(e) for e in a_entries[:3]] + [runs.entry(3, 999, "prompt", [(5, 4.0)])]
    b_entries += [dict(e, position=e["position"] + 1) for e in a_entries[3:]]
    a = await seed(db, "ins-a", a_entries, 5)
    b = await seed(db, "ins-b", b_entries, 6)
    body = await compare(client, "ins-a", "ins-b")
    assert body["alignment"]["opcodes"] == [
        {"tag": "equal", "a_start": 0, "a_end": 3, "b_start": 0, "b_end": 3},
        {"tag": "insert", "a_start": 3, "a_end": 3, "b_start": 3, "b_end": 4},
        {"tag": "equal", "a_start": 3, "a_end": 7, "b_start": 4, "b_end": 8},
    ]
    assert body["alignment"]["positions"] == []  # every aligned token reads the same
    assert body["alignment"]["opcodes"] == [
        {"tag": t, "a_start": i1, "a_end": i2, "b_start": j1, "b_end": j2}
        for t, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ids_a, ids_b).get_opcodes()
    ]
    check_alignment(body, a, b)


async def test_empty_output(client, db):
    ids = [BOS, 101, 102, 103]
    a = await seed(db, "empty-a", timeline([*ids, 201, 202], 4, seed=50), 4)
    b_entries = a.entries[:4]
    b = await seed(db, "empty-b", b_entries, 4)
    body = await compare(client, "empty-a", "empty-b", segment="output")
    assert body["alignment"]["opcodes"] == [
        {"tag": "equal", "a_start": 0, "a_end": 4, "b_start": 0, "b_end": 4},
        {"tag": "delete", "a_start": 4, "a_end": 6, "b_start": 4, "b_end": 4},
    ]
    assert all(f["b"]["hits"] == 0 for f in body["features"])
    check_features(body, runs.expected_features(a.entries, b.entries, "output"))
    check_alignment(body, a, b, segment="output")


async def test_errors(client, db):
    ids = [BOS, 101, 102]
    await seed(db, "err-a", timeline(ids, 2, seed=1), 2)
    await seed(db, "err-other-sae", timeline(ids, 2, seed=1), 2, sae=("other_sae", 16))
    await seed(db, "err-other-layer", timeline(ids, 2, seed=1), 2, sae=(runs.SAE_ID, 12))
    await seed(db, "err-old", timeline(ids, 2, seed=1), 2, age=timedelta(days=30))
    await runs.seed_failed(db, "err-failed")
    await prune_previews(db, timedelta(days=7))

    for other in ("err-other-sae", "err-other-layer"):
        response = await client.get(URL, params={"a": "err-a", "b": other})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "not_comparable"
        assert "err-a" in error["message"] and other in error["message"]
    cases = {"err-nope": (404, "not_found"), "err-old": (410, "gone"),
             "err-failed": (404, "no_preview")}  # fmt: skip
    for run_id, (status, code) in cases.items():
        for params in ({"a": run_id, "b": "err-a"}, {"a": "err-a", "b": run_id}):
            response = await client.get(URL, params=params)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
            assert run_id in response.json()["error"]["message"]
    bad = [{"a": "err-a"}, {"a": "err-a", "b": "../x"}, {"a": "err-a", "b": "err-a", "limit": 0},
           {"a": "err-a", "b": "err-a", "limit": 1001},
           {"a": "err-a", "b": "err-a", "threshold": -1},
           {"a": "err-a", "b": "err-a", "segment": "middle"}]  # fmt: skip
    for params in bad:
        response = await client.get(URL, params=params)
        assert response.status_code == 422, params
        assert "error" in response.json()


async def test_runs_from_the_run_path_and_labels(client, db):
    """Two runs made by POST /run (stub upstreams): compared, labels from the cache."""
    made = []
    for prompt in ("why is the sky blue", "why is the sea blue"):
        response = await client.post(
            "/playground/activations/run", json={"prompt": prompt, "max_tokens": 6}
        )
        assert response.status_code == 200, response.text
        made.append(response.json()["request_id"])
    # The label cache (the stub SAE lists labels; a feature page read fills the cache).
    await client.get(f"/playground/features/{runs.SAE_ID}/{runs.LAYER}/labels")
    body = await compare(client, *made)
    stored = [await runs.stored_timeline(db, r) for r in made]
    check_features(body, runs.expected_features(*stored))
    labelled = [f for f in body["features"] if f["label"] is not None]
    assert labelled, "labels come from the cache"
    assert all(f["label"].startswith(f"stub feature {f['feature_id']} ") for f in labelled)


async def test_threshold(client, db):
    ids = [BOS, 101, 102]
    a_entries = [
        runs.entry(p, t, "prompt", [(1, 5.0), (2, 5.0), (3, 5.0)]) for p, t in enumerate(ids)
    ]
    b_entries = [
        runs.entry(p, t, "prompt", [(1, 5.5), (2, 6.5), (3, 2.0)]) for p, t in enumerate(ids)
    ]
    await seed(db, "thr-a", a_entries, 3)
    await seed(db, "thr-b", b_entries, 3)
    for threshold, moved in ((0.0, [1, 2, 3]), (0.5, [2, 3]), (1.0, [2, 3]), (1.5, [3]), (3.0, [])):
        body = await compare(client, "thr-a", "thr-b", threshold=threshold)
        positions = body["alignment"]["positions"]
        assert body["alignment"]["threshold"] == threshold
        assert [p["a_position"] for p in positions] == ([1, 2] if moved else [])
        for p in positions:
            assert [c["feature_id"] for c in p["changed"]] == moved
            assert p["appeared"] == p["vanished"] == []


async def test_compare_is_not_a_run_id(client):
    response = await client.post(
        "/playground/activations/run", json={"prompt": "hi", "request_id": "compare"}
    )
    assert response.status_code == 422
    assert "reserved" in response.text

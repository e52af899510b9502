"""The SAE service over real HTTP: exact answers, every error path, concurrency."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.engine.sae.builders import EXAMPLE_3, reference_acts
from tests.engine.sae.compare import assert_timeline_matches, gate_margin


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120)


def features(timeline) -> list[list[tuple[int, float]]]:
    return [[(f["feature_id"], f["activation"]) for f in e["features"]] for e in timeline]


def assert_same_timeline(got_timeline, want_timeline) -> None:
    got, want = features(got_timeline), features(want_timeline)
    assert [[f for f, _ in p] for p in got] == [[f for f, _ in p] for p in want]
    for p_got, p_want in zip(got, want, strict=True):
        assert [v for _, v in p_got] == pytest.approx([v for _, v in p_want], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    "name", ["jumprelu", "relu", "topk", "topk_last", "rescale", "scope", "scope3"]
)
def test_extract_matches_float64_reference(sae_service_url, sae_suite, full_model, sequences, name):
    entry = sae_suite[name]
    checked = 0
    for ids in sequences:
        body = {"token_ids": ids, "sae_id": entry.sae_id, "layer": entry.layer, "top_k": 16}
        response = post(sae_service_url, "/extract_features", body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert (data["sae_id"], data["layer"], data["d_sae"]) == (entry.sae_id, entry.layer, 256)
        assert [e["position"] for e in data["feature_timeline"]] == list(range(len(ids)))
        assert [e["token_id"] for e in data["feature_timeline"]] == ids
        x = full_model.resid(ids, entry.layer)
        checked += assert_timeline_matches(
            features(data["feature_timeline"]),
            reference_acts(entry.ref, x),
            gate_margin(entry.ref, x),
            top_k=16,
        )
    assert checked > 50


def test_defaults_tokens_segments_and_special(sae_service_url, sequences, tokenizer):
    ids = sequences[-1]  # chat template + output tokens
    start = len(ids) - 5
    data = post(
        sae_service_url, "/extract_features", {"token_ids": ids, "output_start": start}
    ).json()
    assert (data["sae_id"], data["layer"], data["top_k"]) == ("test_jumprelu", 16, 20)
    timeline = data["feature_timeline"]
    assert [e["segment"] for e in timeline] == ["prompt"] * start + ["output"] * 5
    special = {128000, 128006, 128007, 128009}
    assert [e["special"] for e in timeline] == [i in special for i in ids]
    assert timeline[0]["token"] == "<|begin_of_text|>"
    assert [e["token"] for e in timeline] == [tokenizer.decode([i]) for i in ids]
    no_start = post(sae_service_url, "/extract_features", {"token_ids": ids}).json()
    assert {e["segment"] for e in no_start["feature_timeline"]} == {"prompt"}


def test_both_layouts_same_answer_over_http(sae_service_url, sequences):
    for ids in sequences:
        a = post(
            sae_service_url,
            "/extract_features",
            {"token_ids": ids, "sae_id": "llama_scope_lxr_8x", "layer": 16},
        ).json()
        b = post(
            sae_service_url,
            "/extract_features",
            {"token_ids": ids, "sae_id": "scope_twin", "layer": 16},
        ).json()
        fa, fb = features(a["feature_timeline"]), features(b["feature_timeline"])
        assert [[f for f, _ in pos] for pos in fa] == [[f for f, _ in pos] for pos in fb]
        for pa, pb in zip(fa, fb, strict=True):
            assert [v for _, v in pa] == pytest.approx([v for _, v in pb], rel=1e-5, abs=1e-6)


def test_analyze_features(sae_service_url, sae_suite, full_model, sequences):
    entry = sae_suite["jumprelu"]
    ids = sequences[1]
    ref = reference_acts(entry.ref, full_model.resid(ids, 16))
    busiest = int((ref > 0).sum(dim=0).argmax())
    wanted = [3, 7, busiest, 0]
    body = {"token_ids": ids, "sae_id": "test_jumprelu", "layer": 16, "feature_ids": wanted}
    response = post(sae_service_url, "/analyze_features", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert [t["token_id"] for t in data["tokens"]] == ids
    assert [f["feature_id"] for f in data["features"]] == wanted
    for trace in data["features"]:
        column = ref[:, trace["feature_id"]]
        assert len(trace["activations"]) == len(ids)
        assert trace["activations"] == pytest.approx(column.tolist(), abs=1e-4)
        assert trace["max_activation"] == pytest.approx(float(column.max()), abs=1e-4)
        assert trace["activations"][trace["argmax_position"]] == trace["max_activation"]
    assert max(data["features"][2]["activations"]) > 0
    explanations = [f["explanation"] for f in data["features"]]
    assert explanations[:2] == ["feature three", "seven"] and explanations[3] is None


def test_analyze_agrees_with_extract(sae_service_url, sequences):
    ids = sequences[0]
    timeline = post(sae_service_url, "/extract_features", {"token_ids": ids, "top_k": 5}).json()[
        "feature_timeline"
    ]
    top = timeline[3]["features"][0]
    data = post(
        sae_service_url, "/analyze_features", {"token_ids": ids, "feature_ids": [top["feature_id"]]}
    ).json()
    assert data["features"][0]["activations"][3] == pytest.approx(top["activation"], rel=1e-6)


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/extract_features", {"sae_id": "nope"}, 404, "sae_not_found"),
        ("/extract_features", {"sae_id": "test_topk", "layer": 6}, 404, "sae_layer_not_found"),
        ("/extract_features", {"layer": 15}, 404, "sae_layer_not_found"),
        ("/extract_features", {"token_ids": [5, 128256]}, 422, "token_id_out_of_vocab"),
        ("/extract_features", {"token_ids": [-1]}, 422, "token_id_out_of_vocab"),
        ("/extract_features", {"token_ids": [5] * 513}, 422, "sequence_too_long"),
        ("/extract_features", {"token_ids": []}, 422, "validation_error"),
        ("/extract_features", {"top_k": 0}, 422, "validation_error"),
        ("/extract_features", {"top_k": 257}, 422, "top_k_out_of_bounds"),
        ("/extract_features", {"top_k": 100000}, 422, "validation_error"),
        ("/extract_features", {"output_start": 99}, 422, "output_start_out_of_range"),
        ("/extract_features", {"surprise": 1}, 422, "validation_error"),
        ("/extract_features", {"layer": "sixteen"}, 422, "validation_error"),
        ("/analyze_features", {"feature_ids": [256]}, 422, "feature_id_out_of_range"),
        ("/analyze_features", {"feature_ids": []}, 422, "validation_error"),
        ("/analyze_features", {"feature_ids": list(range(257))}, 422, "too_many_feature_ids"),
        ("/analyze_features", {"feature_ids": [1], "sae_id": "nope"}, 404, "sae_not_found"),
        (
            "/analyze_features",
            {"feature_ids": [1], "token_ids": [200000]},
            422,
            "token_id_out_of_vocab",
        ),
    ],
)
def test_errors(sae_service_url, path, body, status, code):
    body = {"token_ids": [128000, 9906, 1917], **body}
    response = post(sae_service_url, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_not_json_is_structured_422(sae_service_url):
    response = httpx.post(
        sae_service_url + "/extract_features",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_many_simultaneous_requests_each_get_their_own_answer(sae_service_url, sequences):
    """Different sequences, SAEs and layers at once: each answer equals the one-by-one answer,
    and the batcher did put requests together."""
    combos = [("test_jumprelu", 16), ("test_topk", 5), ("llama_scope_lxr_8x", 16), ("test_relu", 0)]
    bodies = [
        {"token_ids": sequences[i % len(sequences)][: 3 + i], "sae_id": s, "layer": lay, "top_k": 8}
        for i, (s, lay) in enumerate(combos * 6)
    ]
    singles = [post(sae_service_url, "/extract_features", body).json() for body in bodies]
    async with httpx.AsyncClient(base_url=sae_service_url, timeout=120) as client:
        responses = await asyncio.gather(
            *(client.post("/extract_features", json=b) for b in bodies)
        )
    batch_sizes = []
    for body, single, response in zip(bodies, singles, responses, strict=True):
        assert response.status_code == 200, response.text
        data = response.json()
        assert (data["sae_id"], data["layer"]) == (body["sae_id"], body["layer"])
        assert [e["token_id"] for e in data["feature_timeline"]] == body["token_ids"]
        assert_same_timeline(data["feature_timeline"], single["feature_timeline"])
        batch_sizes.append(data["batch_size"])
    assert max(batch_sizes) > 1, "simultaneous requests were never batched"


async def test_simultaneous_extract_and_analyze_mixed(sae_service_url, sequences):
    """Analyze and extract requests batched together each get their own answer."""
    extract = [{"token_ids": s, "top_k": 4} for s in sequences]
    analyze = [{"token_ids": s, "feature_ids": [1, 2, 3]} for s in sequences]
    async with httpx.AsyncClient(base_url=sae_service_url, timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post("/extract_features", json=b) for b in extract),
            *(client.post("/analyze_features", json=b) for b in analyze),
        )
    for body, response in zip(extract + analyze, answers, strict=True):
        path = "/analyze_features" if "feature_ids" in body else "/extract_features"
        alone = post(sae_service_url, path, body).json()
        data = response.json()
        if "feature_ids" in body:
            for got, want in zip(data["features"], alone["features"], strict=True):
                assert got["activations"] == pytest.approx(want["activations"], abs=1e-5)
                assert got["argmax_position"] == want["argmax_position"]
        else:
            assert_same_timeline(data["feature_timeline"], alone["feature_timeline"])


def test_saes_lists_every_served_sae(sae_service_url):
    data = httpx.get(sae_service_url + "/saes").json()
    assert data["default"] == {"sae_id": "test_jumprelu", "layer": 16}
    by_id = {s["sae_id"]: s for s in data["saes"]}
    assert set(by_id) - {"test_broken"} == {
        "test_jumprelu",
        "test_relu",
        "test_topk",
        "test_rescale",
        "scope_twin",
        "llama_scope_lxr_8x",
    }
    assert by_id["test_topk"]["layers"] == [5, 31]
    assert by_id["llama_scope_lxr_8x"]["layers"] == [3, 16]
    assert by_id["llama_scope_lxr_8x"]["architecture"] == "jumprelu"
    assert by_id["test_relu"]["architecture"] == "standard"
    assert all(s["d_in"] == 64 and s["d_sae"] == 256 and s["demo"] is False for s in data["saes"])


def test_health(sae_service_url):
    data = httpx.get(sae_service_url + "/health").json()
    assert data["status"] == "ok" and data["device"] == "cpu" and data["dtype"] == "float32"
    assert len(data["loaded_saes"]) <= 3  # the LRU bound
    assert data["torch_threads"] >= 1


async def test_sae_that_cannot_load_fails_alone(sae_service_url, sequences):
    """Weights that cannot be read: 503 for that SAE only, even within the same batch."""
    async with httpx.AsyncClient(base_url=sae_service_url, timeout=120) as client:
        broken, good = await asyncio.gather(
            client.post(
                "/extract_features", json={"token_ids": sequences[0], "sae_id": "test_broken"}
            ),
            client.post("/extract_features", json={"token_ids": sequences[1]}),
        )
    assert broken.status_code == 503, broken.text
    assert broken.json()["error"]["code"] == "sae_load_failed"
    assert good.status_code == 200
    again = post(
        sae_service_url,
        "/analyze_features",
        {"token_ids": [1, 2], "sae_id": "test_broken", "feature_ids": [0]},
    )
    assert again.status_code == 503


def test_saes_say_which_have_labels_and_examples(sae_service_url):
    by_id = {s["sae_id"]: s for s in httpx.get(sae_service_url + "/saes").json()["saes"]}
    assert by_id["test_jumprelu"]["has_labels"] is True
    assert by_id["test_jumprelu"]["has_examples"] is True
    others = [s for sae_id, s in by_id.items() if sae_id != "test_jumprelu"]
    assert not any(s["has_labels"] or s["has_examples"] for s in others)


def test_feature_label_and_examples_from_the_sae_folder(sae_service_url):
    data = httpx.get(sae_service_url + "/features/test_jumprelu/16/3").json()
    assert data == {
        "sae_id": "test_jumprelu",
        "layer": 16,
        "feature_id": 3,
        "d_sae": 256,
        "label": "feature three",
        "examples": [EXAMPLE_3],
    }
    assert httpx.get(sae_service_url + "/features/test_jumprelu/16/200").json()["examples"][0][
        "max_activation"
    ] == pytest.approx(1.0)
    # A label without examples, neither, and an SAE without either file.
    seven = httpx.get(sae_service_url + "/features/test_jumprelu/16/7").json()
    assert (seven["label"], seven["examples"]) == ("seven", [])
    five = httpx.get(sae_service_url + "/features/test_jumprelu/16/5").json()
    assert (five["label"], five["examples"]) == (None, [])
    relu = httpx.get(sae_service_url + "/features/test_relu/0/255").json()
    assert (relu["label"], relu["examples"], relu["d_sae"]) == (None, [], 256)


def test_all_labels_of_an_sae_in_one_answer(sae_service_url):
    data = httpx.get(sae_service_url + "/saes/test_jumprelu/16/labels").json()
    assert data == {
        "sae_id": "test_jumprelu",
        "layer": 16,
        "d_sae": 256,
        "labels": {"3": "feature three", "7": "seven"},
        # Each labelled feature's example words, what label search also matches (200 has
        # examples but no label, 7 a label but no examples).
        "words": {"3": "the quick fox"},
    }
    empty = httpx.get(sae_service_url + "/saes/llama_scope_lxr_8x/3/labels").json()
    assert empty["labels"] == {} and empty["words"] == {} and empty["d_sae"] == 256


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/features/nope/16/3", 404, "sae_not_found"),
        ("/features/test_jumprelu/5/3", 404, "sae_layer_not_found"),
        ("/features/test_jumprelu/16/256", 422, "feature_id_out_of_range"),
        ("/features/test_jumprelu/16/-1", 422, "validation_error"),
        ("/features/test_jumprelu/16/x", 422, "validation_error"),
        ("/saes/nope/16/labels", 404, "sae_not_found"),
        ("/saes/test_jumprelu/17/labels", 404, "sae_layer_not_found"),
        ("/saes/test_jumprelu/-2/labels", 422, "validation_error"),
    ],
)
def test_feature_routes_errors(sae_service_url, path, status, code):
    response = httpx.get(sae_service_url + path)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code

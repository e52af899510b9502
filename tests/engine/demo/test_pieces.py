"""The demo build's pieces on small, known data: corpus splitting, batching plans, the TopK
trainer on a planted sparse dictionary, top activations, labels and label precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.demo import features
from engine.demo.corpus import split_texts
from engine.demo.label_precision import Precision, label_precision
from engine.demo.labels import (
    Hit,
    Label,
    labels_from_examples,
    make_label,
)
from engine.demo.residuals import plan_batches
from engine.demo.trainer import TrainSettings, evaluate, train_topk_sae


def test_split_texts_fortune_files_and_paragraphs():
    fortune = "First one,\nstill first.\n%\n_\bB_\bo_\bl_\bd and plain.\n%\nshort\n%%\n"
    assert split_texts(fortune) == ["First one,\nstill first.", "Bold and plain."]
    prose = "A first paragraph of text.\n\n  \nA second paragraph here.\n"
    assert split_texts(prose) == ["A first paragraph of text.", "A second paragraph here."]


def test_plan_batches_groups_similar_lengths_within_the_token_budget():
    lengths = [5, 100, 7, 98, 6, 50, 51, 5]
    batches = plan_batches(lengths, batch_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert longest * len(batch) <= max(120, longest)  # budget (a long one may be alone)
        assert longest * len(batch) <= 1.1 * sum(lengths[i] for i in batch) + longest


@pytest.fixture
def one_thread():
    """Small matrices: one thread avoids OpenMP barriers on busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_trainer_recovers_a_planted_sparse_dictionary(one_thread):
    """Data made of 3 active atoms (of 32) per row: a TopK SAE with k=3 and 64 latents
    explains most of it (sparsify's SparseCoder, our loop)."""
    gen = torch.Generator().manual_seed(0)
    d_in, atoms, n = 16, 32, 3000
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, d_in, generator=gen), dim=1)
    codes = torch.zeros(n, atoms)
    active = torch.stack([torch.randperm(atoms, generator=gen)[:3] for _ in range(n)])
    codes.scatter_(1, active, 1 + 4 * torch.rand(n, 3, generator=gen))
    x = codes @ dictionary + 3.0  # an offset for b_dec to learn
    # lr None: sparsify's own rule (0.08 at 64 latents); the demo's 0.005 suits 2048 latents.
    settings = TrainSettings(
        d_sae=64, k=3, epochs=8, batch_size=128, dead_after_tokens=1000, lr=None
    )
    sae, report = train_topk_sae(x, settings, say=lambda _line: None)
    result = evaluate(sae, x)
    assert report.steps == 8 * (n // 128)
    assert result.fvu < 0.2, result.fvu  # 1.0 = no better than the mean
    assert result.l0 <= 3


def test_top_activations_match_a_brute_force_sort():
    gen = torch.Generator().manual_seed(1)
    values = torch.rand(50, 3, generator=gen)
    values[values < 0.2] = 0  # some slots inactive
    indices = torch.stack([torch.randperm(10, generator=gen)[:3] for _ in range(50)])
    codes = features.SparseCodes(values, indices)
    top = features.top_activations(codes, d_sae=10, n=5)
    dense = torch.zeros(50, 10).scatter_(1, indices, values)
    for f in range(10):
        want = sorted(((float(dense[r, f]), r) for r in range(50) if dense[r, f] > 0), reverse=True)
        got = top.of(f)
        assert [v for v, _ in want[:5]] == pytest.approx([v for _, v in got])
        assert {r for _, r in want[:5]} == {r for r, _ in got}
    rows = np.arange(0, 50, 2)
    only_even = features.top_activations(codes, d_sae=10, n=5, rows=rows)
    assert all(r % 2 == 0 for f in range(10) for r, _ in only_even.of(f))


def hits(*tokens: str, before: str | None = None) -> list[Hit]:
    """One activation per token, strongest first, each in its own window (after a word of
    its own unless ``before``)."""
    return [
        Hit([before or f" q{n}", t, f" z{n}"], 1, 10.0 - n, window=n) for n, t in enumerate(tokens)
    ]


def test_labels_name_the_strongest_top_tokens():
    label = make_label(hits(" wake", " Wake", "woke", " awaken", " wake", " the"))
    # Up to four tokens, each at least 5 % of the activation; "wake" names "Wake" and "awaken-".
    assert label.text.startswith("diverse: wake / woke / awaken / the")
    assert label.keys == {"wake", "woke", "awaken", "the"} and label.diverse
    assert not label.names([" walk"], 0) and label.names([" awakened"], 0)
    assert make_label(hits(" a", " b")) is None  # too few activations to say
    spaces = make_label(hits("\n", "\n", "\n "))
    assert spaces.text == "line breaks and spaces" and not spaces.diverse


def test_a_feature_is_labelled_when_its_contexts_agree():
    one_word = make_label(hits(" wake", " Wake", " wakes", " wake"))
    assert not one_word.diverse and one_word.text == "wake / wakes"
    # The strongest tokens differ and share nothing: said so, and not judged.
    scattered = make_label(hits(*(f" w{i}" for i in range(8)), before=" the"))
    assert scattered.diverse and scattered.text == "diverse: w0 / w1 / w2 / w3"
    assert "mixed" not in scattered.text
    held = {0: [Hit([" w0"], 0, 1.0)] * 3, 1: [Hit([" wake"], 0, 1.0), *[Hit([" x"], 0, 1.0)] * 3]}
    labels = {0: scattered, 1: one_word}
    assert label_precision(labels, held) == Precision(0.25, 1)
    assert label_precision(labels, held, diverse=True) == Precision((1 + 0.25) / 2, 2)


def test_labels_say_the_class_the_tokens_share():
    digits = make_label(hits("7", " 12", "5", "1999"))
    assert digits.text == "numbers (7, 12, 5)" and not digits.diverse
    assert digits.names(["3"], 0) and not digits.names([" seven"], 0)
    places = make_label(hits(" Paris", " London", " France", " Tokyo"))
    assert places.text.startswith("place names (Paris, London, France)")
    assert places.names([" Berlin"], 0) and not places.names([" Smith"], 0)
    # A class naming most but not all: shown with the tokens it misses.
    names = make_label(hits(" Alice", " the", " Bob", " Carol", " Dave", " Eve", " Frank"))
    assert (
        names.text == "names and title-case words (Alice, Bob, Carol) · Alice / the / Bob / Carol"
    )
    assert not names.diverse and names.names([" the"], 0)
    # A word ending is said, but the contexts do not agree on it alone.
    ing = make_label(hits(" running", " jumping", " eating", " sleeping"))
    assert ing.text == "diverse: words ending “-ing”" and ing.names([" singing"], 0)


def test_the_context_word_is_said():
    # A word in most windows (not the token itself) is named: a search for it finds the feature.
    sea = [Hit([" the", " sea", " and", t, "."], 3, 9.0 - n, window=n)
           for n, t in enumerate([" waves", " wind", " boat", " storm"])]  # fmt: skip
    label = make_label(sea)
    assert label.text.endswith("near “sea”")
    assert label.names([" deep", " sea", " fish"], 2)


def test_labels_from_an_examples_file_record():
    record = {
        "feature_id": 4,
        "examples": [
            {"tokens": ["a", " 7", " b"], "activations": [0.0, 9.0, None]},
            {"tokens": [" 3", " c"], "activations": [8.0, 0.0]},
            {"tokens": [" d", "12"], "activations": [0.0, 7.5]},
        ],
    }
    assert labels_from_examples([record])[4].text == "numbers (7, 3, 12)"


def test_label_precision_is_the_share_of_heldout_activations_named():
    token_text = {0: " Paris", 1: " France", 2: " cat"}.__getitem__
    ids = [0, 1, 2, 0, 0, 2]
    rows = np.array([[0, 1, 2, 3, -1], [2, 5, 4, -1, -1]])
    heldout = features.TopActivations(rows, np.where(rows >= 0, 1.0, 0.0).astype(np.float32))
    labels = {
        0: Label("Paris / France", frozenset({"paris", "france"})),
        1: Label("cat", frozenset({"cat"})),
    }

    def window(row: int) -> tuple[list[str], int, int]:
        return [token_text(ids[row])], 0, row

    precision = features.label_precision(labels, heldout, window)
    assert precision.judged == 2
    assert precision.value == pytest.approx((3 / 4 + 2 / 3) / 2)

"""The demo build's pieces on small, known data: corpus splitting, batching plans, the TopK
trainer on a planted sparse dictionary, top activations, labels and label precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.demo import features
from engine.demo.corpus import split_texts
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


def test_labels_name_the_most_frequent_top_tokens():
    label = features.make_label([" wake", " Wake", "woke", " awaken", " wake", " the"])
    assert label.text == "wake / woke / awaken" and label.keys == {"wake", "woke", "awaken"}
    mixed = features.make_label([f" w{i}" for i in range(8)])
    assert mixed.text.startswith("mixed: w0 / w1 / w2")
    assert features.make_label([" a", " b"]) is None  # too few activations to say
    assert features.make_label(["\n", "\n", " x"]).text == "↵ / x"


def test_label_precision_is_the_share_of_heldout_top_tokens_named():
    token_text = {0: " Paris", 1: " France", 2: " cat"}.__getitem__
    token_ids = torch.tensor([0, 1, 2, 0, 0, 2])
    rows = np.array([[0, 1, 2, 3, -1], [2, 5, 4, -1, -1]])
    heldout = features.TopActivations(rows, np.where(rows >= 0, 1.0, 0.0).astype(np.float32))
    labels = {
        0: features.Label("Paris / France", frozenset({"paris", "france"})),
        1: features.Label("cat", frozenset({"cat"})),
    }
    precision = features.label_precision(labels, heldout, token_ids, token_text)
    assert precision.judged == 2
    assert precision.value == pytest.approx((3 / 4 + 2 / 3) / 2)

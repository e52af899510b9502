"""The sort-free top-k/top-p mask equals vLLM's ``apply_top_k_top_p_pytorch`` on every row:
random and adversarial logits (flat rows, ties at the cut, -inf entries, top-k with top-p,
greedy rows mixed with sampled ones, non-finite rows). No engine is started."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.generation import nucleus_mask

pytest.importorskip("vllm")
from vllm.v1.sample.ops.topk_topp_sampler import (
    apply_top_k_top_p_pytorch as reference,
)

LLAMA_VOCAB = 128256


def masks(logits, k, p):
    """(reference's result, ours, our stats) for the same rows."""
    expected = reference(logits.clone(), None if k is None else k.clone(), p.clone(), True)
    stats = nucleus_mask.MaskStats()
    got = nucleus_mask.apply_top_k_top_p(
        logits.clone(), None if k is None else k.clone(), p.clone(), reference, stats
    )
    return expected, got, stats


def assert_same(expected, got):
    # Bit for bit: the same entries -inf, every other entry untouched (NaN where NaN).
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


def gaussian(rows, vocab, std, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=gen) * std


def full(rows, value, dtype=torch.float32):
    return torch.full((rows,), value, dtype=dtype)


@pytest.mark.parametrize("std", [4.0, 4.0 / 0.7, 8.0, 20.0])
def test_llama_sized_rows_at_page_defaults(std):
    # std 4 is the tiny model's logits; / 0.7 its page-default temperature.
    logits = gaussian(16, LLAMA_VOCAB, std, seed=int(std * 10))
    expected, got, stats = masks(logits, None, full(16, 0.95))
    assert_same(expected, got)
    # The point of it: such rows are decided without the reference's sort.
    assert stats.rows["fast"] == 16, stats.rows


def test_top_k_with_top_p_and_top_k_bounds():
    logits = gaussian(8, LLAMA_VOCAB, 5.0, seed=1)
    k = torch.tensor([1, 2, 50, 50, 1000, 20000, LLAMA_VOCAB, LLAMA_VOCAB - 1], dtype=torch.int32)
    p = torch.tensor([0.95, 0.5, 0.95, 1.0, 0.9, 0.99, 0.95, 0.3])
    expected, got, stats = masks(logits, k, p)
    assert_same(expected, got)
    assert stats.rows["fast"] >= 6, stats.rows


def test_batch_mixing_greedy_and_sampled_rows():
    # vLLM gives greedy rows p = 1 and k = vocab; their logits are only divided by 1.
    logits = gaussian(6, LLAMA_VOCAB, 4.0, seed=2)
    logits[1::2] /= 0.7
    p = torch.tensor([1.0, 0.95, 1.0, 0.95, 1.0, 0.8])
    k = torch.tensor([LLAMA_VOCAB, LLAMA_VOCAB, LLAMA_VOCAB, 40, LLAMA_VOCAB, 7])
    expected, got, stats = masks(logits, k.to(torch.int32), p)
    assert_same(expected, got)
    assert stats.rows["fast"] == 6, stats.rows


def test_flat_rows_where_the_nucleus_is_most_of_the_vocabulary():
    logits = torch.zeros(6, LLAMA_VOCAB)
    logits[1] = gaussian(1, LLAMA_VOCAB, 1e-3, seed=3)  # nearly flat
    logits[2] = gaussian(1, LLAMA_VOCAB, 0.5, seed=4)
    logits[3, :10] = 1.0  # ten tied leaders, a flat rest
    logits[4] = gaussian(1, LLAMA_VOCAB, 2.0, seed=5)  # nucleus of tens of thousands
    logits[5] = gaussian(1, LLAMA_VOCAB, 3.0, seed=6)
    expected, got, _ = masks(logits, None, torch.tensor([0.95, 0.95, 0.5, 0.95, 0.95, 0.9]))
    assert_same(expected, got)


def test_ties_at_the_cut():
    # Groups of equal logits; each p puts the cut inside, at the edge of, or beyond a group.
    base = torch.tensor([5.0] * 3 + [4.0] * 5 + [3.0] * 8 + [0.0] * 1000)
    weights = base.exp() / base.exp().sum()
    cum = weights.cumsum(0)
    ps = [cum[1].item(), cum[2].item(), cum[4].item(), cum[7].item(), cum[10].item(), 0.5, 0.999]
    logits = base.repeat(len(ps), 1)
    expected, got, stats = masks(logits, None, torch.tensor(ps))
    assert_same(expected, got)
    assert stats.rows["tie"] >= 1, stats.rows  # the sort's order among equals decides those


def reference_cumulative(row: torch.Tensor, k: int) -> torch.Tensor:
    """The reference's own float32 ascending cumulative probabilities for one row."""
    ascending = row.sort().values
    ascending[ascending < ascending[-k]] = -math.inf
    return ascending.softmax(-1).cumsum(-1)


def near_flat_top(rows: int, k: int, seed: int) -> torch.Tensor:
    # k nearly equal leaders: the reference's float32 sum over them carries the most rounding.
    logits = gaussian(rows, LLAMA_VOCAB, 1.0, seed=seed) - 10.0
    logits[:, :k] = 1.0 + 1e-3 * gaussian(rows, k, 1.0, seed=seed + 1)
    return logits


@pytest.mark.parametrize(
    ("logits", "k"),
    [
        (gaussian(8, LLAMA_VOCAB, 4.0 / 0.7, seed=11), LLAMA_VOCAB),  # page defaults
        (near_flat_top(8, 20000, seed=12), 20000),
    ],
    ids=["page-defaults", "near-flat-top-k"],
)
def test_cut_exactly_at_the_references_float32_cumulative_mass(logits, k):
    # 1 - p equal to the reference's own float32 cumulative mass at a token (the reference
    # masks that token, C <= 1 - p): only a bound on the reference's rounding tells which side
    # of the cut an exact computation of that mass falls.
    cuts = []
    for row in logits:
        cumulative = reference_cumulative(row, k)
        # 1 - p is a multiple of 2^-24 for p in [0.5, 1): pick a mass that is one.
        scaled = cumulative.double() * 2**24
        j = int(((scaled == scaled.round()) & (cumulative > 0.04)).nonzero()[0])
        cuts.append(cumulative[j].item())
    p = torch.tensor([1.0 - cut for cut in cuts])  # exact in float32
    assert torch.equal(1 - p, torch.tensor(cuts))
    expected, got, stats = masks(logits, torch.full((8,), k, dtype=torch.int32), p)
    assert_same(expected, got)
    assert stats.rows["margin"] >= 6, stats.rows


def grouped_leaders(seed: int) -> torch.Tensor:
    """One top token, five groups of 4,000 equal logits near it, each with one slightly larger
    token of its own, the rest 30 nats below, shuffled: the reference's float32 sum over the
    groups rounds the same way thousands of times, so its cumulative masses are off by up to
    ~1e-5 (about 200 float32 ulps)."""
    row = torch.full((LLAMA_VOCAB,), -30.0)
    row[0] = 0.0
    for group in range(5):
        value = math.log(0.3) - 0.013 * group - seed / 1e3
        start = 1 + group * 4001
        row[start : start + 4000] = value
        row[start + 4000] = value + 0.0065  # a lone token between two groups
    return row[torch.randperm(LLAMA_VOCAB, generator=torch.Generator().manual_seed(seed))]


def test_cut_between_the_references_rounded_mass_and_the_exact_mass():
    # 1 - p strictly between the reference's float32 cumulative mass at a lone token and the
    # exact one: exact arithmetic decides that token the other way; the mask must not.
    logits = torch.stack([grouped_leaders(seed) for seed in range(3)])
    ps = []
    for row in logits:
        ascending = row.sort().values
        probs = ascending.softmax(-1)
        rounded = probs.cumsum(-1).double()  # the reference's own steps
        exact = probs.double().cumsum(-1) / probs.double().sum()
        lone = (ascending[1:-1] != ascending[:-2]) & (ascending[1:-1] != ascending[2:])
        j = 1 + int((lone & (ascending[1:-1] > -20)).nonzero()[0])
        lo, hi = sorted((rounded[j].item(), exact[j].item()))
        cut = math.ceil((lo + (hi - lo) / 4) * 2**24) / 2**24  # on the float32 1 - p grid
        assert lo < cut < hi
        ps.append(1.0 - cut)
    expected, got, stats = masks(logits, None, torch.tensor(ps))
    assert_same(expected, got)
    assert stats.rows["margin"] == 3, stats.rows


def test_minus_inf_entries_and_non_finite_rows():
    logits = gaussian(6, 4096, 3.0, seed=5)
    logits[0, ::2] = -math.inf
    logits[1, 1:] = -math.inf  # one finite entry
    logits[2] = -math.inf  # nothing finite
    logits[3, 7] = math.nan
    logits[4, 9] = math.inf
    logits[5, :100] = -math.inf
    k = torch.tensor([4096, 4096, 4096, 10, 4096, 3], dtype=torch.int32)
    expected, got, stats = masks(logits, k, full(6, 0.9))
    assert_same(expected, got)
    assert stats.rows["non_finite"] == 3, stats.rows


def test_p_one_rows_and_deep_tails():
    # p = 1 masks only probabilities that underflow to 0: none within 80 nats of the max, all
    # beyond 110; in between the reference decides.
    logits = gaussian(4, LLAMA_VOCAB, 4.0, seed=6)
    logits[1, :50] = logits[1].max() - 200.0
    logits[2] /= 0.2  # logits spread over ~150 nats
    logits[3, 5] = logits[3].max() - 95.0
    expected, got, stats = masks(logits, None, full(4, 1.0))
    assert_same(expected, got)
    assert stats.rows["fast"] == 2 and stats.rows["deep_tail"] == 2, stats.rows


def test_tiny_and_extreme_p():
    logits = gaussian(4, 1000, 2.0, seed=7)
    logits[3, 10] = logits[3, 11] = logits[3].max() + 1  # tied leaders with p -> 0
    expected, got, _ = masks(logits, None, torch.tensor([1e-9, 1e-4, 1 - 2**-24, 1e-9]))
    assert_same(expected, got)


def test_empty_batch():
    logits = torch.empty(0, 10)
    assert nucleus_mask.apply_top_k_top_p(logits, None, torch.empty(0), reference).shape == (0, 10)


@st.composite
def batches(draw):
    rows = draw(st.integers(1, 6))
    vocab = draw(st.sampled_from([1, 2, 7, 16, 100, 1001, 4096, 32001]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    std = draw(st.sampled_from([0.0, 1e-3, 0.5, 2.0, 6.0, 30.0]))
    logits = torch.randn(rows, vocab, generator=gen) * std
    if draw(st.booleans()):  # coarse values: many ties
        logits = logits.round()
    if draw(st.booleans()):
        logits[torch.rand(rows, vocab, generator=gen) < 0.3] = -math.inf
    p = torch.tensor(
        draw(
            st.lists(
                st.sampled_from([0.1, 0.5, 0.9, 0.95, 0.99, 1.0]), min_size=rows, max_size=rows
            )
        )
    )
    k = None
    if draw(st.booleans()):
        k = torch.tensor(
            draw(st.lists(st.integers(1, vocab), min_size=rows, max_size=rows)), dtype=torch.int32
        )
    return logits, k, p


@settings(max_examples=300, deadline=None, derandomize=True)
@given(batches())
def test_random_batches(batch):
    logits, k, p = batch
    expected, got, _ = masks(logits, k, p)
    assert_same(expected, got)

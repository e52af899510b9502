"""The truncated forward gives the full model's residuals (HF output_hidden_states)."""

from __future__ import annotations

import pytest
import torch

from engine.sae.residual import ResidualModel


@pytest.fixture(scope="module")
def truncated(tiny_model_dir) -> ResidualModel:
    return ResidualModel.load(str(tiny_model_dir), device=torch.device("cpu"), dtype=torch.float32)


@pytest.mark.parametrize("layer", [0, 1, 15, 16, 30, 31])
def test_truncated_equals_full_forward(truncated, full_model, sequences, layer):
    for ids in sequences[:3]:
        got = truncated.residuals(torch.tensor([ids]), {layer})[layer][0]
        want = full_model.resid(ids, layer)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_layer_index_is_block_output_not_input(truncated, full_model, sequences):
    """The classic off-by-one: layer L is the output of block L = hidden_states[L + 1]."""
    ids = sequences[0]
    got = truncated.residuals(torch.tensor([ids]), {16})[16][0]
    assert not torch.allclose(got, full_model.resid(ids, 15), atol=1e-3)


def test_blocks_above_the_layer_are_never_run(truncated, sequences):
    called = []
    hooks = [
        block.register_forward_hook(lambda _m, _i, _o, i=i: called.append(i))
        for i, block in enumerate(truncated.base.layers)
    ]
    try:
        truncated.residuals(torch.tensor([sequences[0]]), {5, 16})
    finally:
        for hook in hooks:
            hook.remove()
    assert called == list(range(17))


def test_dropped_layers_model_matches(tiny_model_dir, full_model, sequences):
    small = ResidualModel.load(
        str(tiny_model_dir), device=torch.device("cpu"), dtype=torch.float32, keep_layers=17
    )
    assert small.kept_layers == 17
    ids = sequences[1]
    torch.testing.assert_close(
        small.residuals(torch.tensor([ids]), {16})[16][0], full_model.resid(ids, 16)
    )
    with pytest.raises(ValueError):
        small.residuals(torch.tensor([ids]), {17})


def test_right_padded_batch_equals_single(truncated, sequences):
    lengths = [len(s) for s in sequences]
    ids = torch.zeros((len(sequences), max(lengths)), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    batched = truncated.residuals(ids, {16})[16]
    for row, seq in enumerate(sequences):
        single = truncated.residuals(torch.tensor([seq]), {16})[16][0]
        torch.testing.assert_close(batched[row, : len(seq)], single, rtol=1e-5, atol=1e-5)

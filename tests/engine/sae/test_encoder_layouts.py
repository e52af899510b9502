"""Each architecture and normalisation against the float64 reference; each layout read the
way SAELens reads it; the same weights in both layouts encode alike."""

from __future__ import annotations

import json

import pytest
import torch

from engine.sae.encoder import SaeEncoder
from engine.sae.layouts import load_weights, read_meta
from engine.sae.registry import SaeRegistry, UnknownSae, UnknownSaeLayer
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME
from tests.engine.sae.builders import reference_acts
from tests.engine.sae.compare import gate_margin

CPU = torch.device("cpu")


def encode(folder, x):
    meta = read_meta(folder)
    enc = SaeEncoder(meta, load_weights(meta), device=CPU, dtype=torch.float32)
    return meta, enc.encode(x.float()).double()


@pytest.mark.parametrize(
    "name", ["jumprelu", "relu", "topk", "topk_last", "rescale", "scope", "scope_twin"]
)
def test_encoder_matches_reference(sae_suite, full_model, sequences, name):
    entry = sae_suite[name]
    x = torch.cat([full_model.resid(s, entry.layer) for s in sequences])
    meta, got = encode(entry.folder, x)
    assert (meta.sae_id, meta.layer) == (entry.sae_id, entry.layer)
    want = reference_acts(entry.ref, x)
    assert (want > 0).any(dim=-1).all(), "every position should have some active feature"
    # Gate decisions equal except within float32 rounding of the threshold.
    disagree = (got > 0) != (want > 0)
    tol = 1e-4 * (1 + want.abs().max())
    assert (gate_margin(entry.ref, x)[disagree].abs() < tol).all()
    assert disagree.sum() <= max(2, want.numel() // 1000)
    both = (got > 0) & (want > 0)
    torch.testing.assert_close(got[both], want[both], rtol=1e-4, atol=1e-4)


def test_architectures_are_what_the_folders_say(sae_suite):
    kinds = {name: read_meta(s.folder).architecture for name, s in sae_suite.items()}
    assert kinds == {
        "jumprelu": "jumprelu",
        "relu": "standard",
        "topk": "topk",
        "topk_last": "topk",
        "rescale": "jumprelu",
        "scope": "jumprelu",
        "scope3": "jumprelu",
        "scope_twin": "jumprelu",
    }


def test_topk_keeps_at_most_k(sae_suite, full_model, sequences):
    entry = sae_suite["topk"]
    _, got = encode(entry.folder, full_model.resid(sequences[2], 5))
    assert ((got > 0).sum(dim=-1) <= entry.ref.k).all()


def test_llama_scope_read_as_saelens_does(sae_suite):
    """SAELens' Llama Scope loader: W_enc = encoder.weight.T, no b_dec on the input,
    norm factor sqrt(d_model) / dataset_average_activation_norm.in, scalar threshold times it."""
    folder = sae_suite["scope"].folder
    hp = json.loads((folder / "hyperparams.json").read_text())
    meta = read_meta(folder)
    factor = hp["d_model"] ** 0.5 / hp["dataset_average_activation_norm"]["in"]
    assert meta.sae_id == "llama_scope_lxr_8x" and meta.layer == 16
    assert meta.layout == "llama_scope" and meta.apply_b_dec_to_input is False
    assert meta.normalize_activations == "expected_average_only_in"
    assert meta.norm_scaling_factor == pytest.approx(factor)
    assert meta.scalar_threshold == pytest.approx(hp["jump_relu_threshold"] * factor)
    weights = load_weights(meta)
    assert tuple(weights.W_enc.shape) == (hp["d_model"], hp["d_sae"])


def test_both_layouts_same_result(sae_suite, full_model, sequences):
    x = torch.cat([full_model.resid(s, 16) for s in sequences])
    _, scope = encode(sae_suite["scope"].folder, x)
    _, twin = encode(sae_suite["scope_twin"].folder, x)
    assert (scope > 0).sum() > 0
    torch.testing.assert_close(scope, twin, rtol=1e-5, atol=1e-5)


def test_registry_resolves_and_evicts(sae_suite, suite_dirs):
    reg = SaeRegistry(
        suite_dirs,
        max_loaded=2,
        device=CPU,
        dtype=torch.float32,
        labels_filename=LABELS_FILENAME,
        examples_filename=EXAMPLES_FILENAME,
    )
    assert reg.default == ("test_jumprelu", 16)
    assert reg.resolve(None, None).sae_id == "test_jumprelu"
    assert reg.resolve("test_topk", None).layer == 5  # lowest layer when not the default SAE
    assert reg.resolve("llama_scope_lxr_8x", 3).layer == 3  # folder of folders
    # The service answers these with 404 sae_layer_not_found / sae_not_found (test_api.py).
    with pytest.raises(UnknownSaeLayer):
        reg.resolve("test_topk", 6)
    with pytest.raises(UnknownSae):
        reg.resolve("nope", None)
    first = reg.encoder(reg.resolve("test_relu", 0))
    reg.encoder(reg.resolve("test_topk", 5))
    assert reg.encoder(reg.resolve("test_relu", 0)) is first  # cached
    reg.encoder(reg.resolve("test_topk", 31))
    reg.encoder(reg.resolve("test_rescale", 10))
    assert reg.loaded() == [("test_topk", 31), ("test_rescale", 10)]
    assert reg.labels(reg.resolve("test_jumprelu", 16)) == {3: "feature three", 7: "seven"}
    assert reg.labels(reg.resolve("test_relu", 0)) == {}


def test_non_residual_hook_refused(tmp_path, sae_suite):
    folder = tmp_path / "attn"
    folder.mkdir()
    src = sae_suite["relu"].folder
    (folder / "sae_weights.safetensors").write_bytes((src / "sae_weights.safetensors").read_bytes())
    cfg = json.loads((src / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.3.attn.hook_z"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="residual"):
        read_meta(folder)


@pytest.mark.parametrize(
    "lengths", [[64, 256, 100, 250, 70, 240, 128, 66], [10] * 5, [7], [1, 1000, 3, 999]]
)
def test_length_buckets_cover_every_job_within_the_padding_bound(lengths):
    from engine.sae.encode_batch import length_buckets

    buckets = length_buckets(lengths, 1.25)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for bucket in buckets:
        padded = max(lengths[i] for i in bucket) * len(bucket)
        assert len(bucket) == 1 or padded <= 1.25 * sum(lengths[i] for i in bucket)
    if lengths == [10] * 5:
        assert buckets == [[0, 1, 2, 3, 4]]  # equal lengths: one forward

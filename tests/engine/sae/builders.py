"""Small random SAEs written to disk in each supported layout, with the float64 weights kept
so that tests can compute the reference straight from the formulas."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file


@dataclass
class RefSae:
    """Everything the float64 reference needs (SAELens conventions)."""

    architecture: str  # relu | jumprelu | topk
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None = None  # [d_sae]
    k: int | None = None
    apply_b_dec_to_input: bool = True
    normalize: str = "none"  # none | expected_average_only_in | constant_norm_rescale
    norm_scaling_factor: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]


def reference_pre(sae: RefSae, x: torch.Tensor) -> torch.Tensor:
    """float64 pre-activations [n, d_sae] straight from SAELens' definitions."""
    x = x.double()
    if sae.normalize == "expected_average_only_in":
        x = x * sae.norm_scaling_factor
    elif sae.normalize == "constant_norm_rescale":
        x = x * (sae.d_in**0.5) / x.norm(dim=-1, keepdim=True)
    return (x - sae.b_dec * float(sae.apply_b_dec_to_input)) @ sae.W_enc + sae.b_enc


def reference_acts(sae: RefSae, x: torch.Tensor) -> torch.Tensor:
    """float64 activations [n, d_sae] straight from SAELens' definitions."""
    pre = reference_pre(sae, x)
    if sae.architecture == "relu":
        return torch.relu(pre)
    if sae.architecture == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold)
    if sae.architecture == "topk":
        top = torch.topk(pre, sae.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    raise AssertionError(sae.architecture)


def separated_threshold(pre: torch.Tensor, fire_rate: float) -> torch.Tensor:
    """Per feature, midway between two adjacent sample pre-activations near the
    ``1 - fire_rate`` quantile, so no sample sits on the threshold."""
    ordered = torch.sort(pre, dim=0).values
    m = min(max(1, round((1 - fire_rate) * pre.shape[0])), pre.shape[0] - 1)
    return ((ordered[m - 1] + ordered[m]) / 2).clamp(min=1e-3)


def random_sae(
    architecture: str,
    sample_resid: torch.Tensor,
    *,
    d_sae: int = 256,
    seed: int = 0,
    fire_rate: float = 0.08,
    **options,
) -> RefSae:
    """Random weights scaled to the model's residuals so that a few % of features fire."""
    gen = torch.Generator().manual_seed(seed)
    x = sample_resid.double()
    d_in = x.shape[1]
    w = torch.randn(d_in, d_sae, generator=gen, dtype=torch.float64) / x.norm(dim=-1).mean()
    sae = RefSae(
        architecture=architecture,
        W_enc=w,
        b_enc=torch.randn(d_sae, generator=gen, dtype=torch.float64) * 0.05,
        b_dec=x.mean(dim=0) + torch.randn(d_in, generator=gen, dtype=torch.float64) * 0.01,
        **options,
    )
    if architecture == "jumprelu" and sae.threshold is None:
        pre = (x * sae.norm_scaling_factor - sae.b_dec * float(sae.apply_b_dec_to_input)) @ w
        sae.threshold = separated_threshold(pre + sae.b_enc, fire_rate)
    if architecture == "topk" and sae.k is None:
        sae.k = 12
    return sae


def write_saelens(folder: Path, sae: RefSae, *, layer: int, sae_id: str, **cfg_extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": sae.W_enc,
        "b_enc": sae.b_enc,
        "b_dec": sae.b_dec,
        "W_dec": sae.W_enc.T.contiguous(),
    }
    if sae.threshold is not None:
        tensors["threshold"] = sae.threshold
    save_file(
        {k: v.float().contiguous() for k, v in tensors.items()}, folder / "sae_weights.safetensors"
    )
    cfg = {
        "architecture": {"relu": "standard"}.get(sae.architecture, sae.architecture),
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": sae.normalize,
        "metadata": {"hook_name": f"blocks.{layer}.hook_resid_post", "model_name": "tiny"},
        "sae_id": sae_id,
        **({"k": sae.k} if sae.k else {}),
        **cfg_extra,
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    if sae.normalize == "expected_average_only_in":
        (folder / "playground.json").write_text(
            json.dumps({"norm_scaling_factor": sae.norm_scaling_factor})
        )
    return folder


def write_llama_scope(
    folder: Path, sae: RefSae, *, layer: int, jump_relu_threshold: float, average_norm: float
) -> Path:
    """Llama Scope's released layout. ``sae`` must be the SAELens view of it (as SAELens'
    loader converts it): its threshold and factor are derived from these hyperparameters."""
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    tensors = {
        "encoder.weight": sae.W_enc.T.contiguous(),
        "encoder.bias": sae.b_enc,
        "decoder.weight": sae.W_enc.contiguous(),
        "decoder.bias": sae.b_dec,
    }
    save_file(
        {k: v.float().contiguous() for k, v in tensors.items()},
        folder / "checkpoints" / "final.safetensors",
    )
    hparams = {
        "d_model": sae.d_in,
        "d_sae": sae.d_sae,
        "expansion_factor": sae.d_sae // sae.d_in,
        "hook_point_in": f"blocks.{layer}.hook_resid_post",
        "hook_point_out": f"blocks.{layer}.hook_resid_post",
        "act_fn": "jumprelu",
        "jump_relu_threshold": jump_relu_threshold,
        "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": average_norm, "out": average_norm},
        "top_k": 50,
    }
    (folder / "hyperparams.json").write_text(json.dumps(hparams))
    return folder


def llama_scope_view(sae: RefSae, *, jump_relu_threshold: float, average_norm: float) -> RefSae:
    """What SAELens makes of a Llama Scope folder: no b_dec on the input, dataset-wise norm
    factor sqrt(d_model) / average norm, scalar threshold times that factor."""
    factor = sae.d_in**0.5 / average_norm
    return RefSae(
        architecture="jumprelu",
        W_enc=sae.W_enc,
        b_enc=sae.b_enc,
        b_dec=sae.b_dec,
        threshold=torch.full((sae.d_sae,), jump_relu_threshold * factor, dtype=torch.float64),
        apply_b_dec_to_input=False,
        normalize="expected_average_only_in",
        norm_scaling_factor=factor,
    )


# The examples file beside test_jumprelu (format: docs/sae.md).
EXAMPLE_3 = {
    "tokens": ["The", " quick", " fox"],
    "token_ids": [791, 4062, 39935],
    "activations": [0.0, 2.5, 0.75],
    "max_index": 1,
    "max_activation": 2.5,
}
EXAMPLES_JSONL = [
    {"format": "playground.feature_examples/1", "context_before": 12, "context_after": 4},
    {"feature_id": 3, "examples": [EXAMPLE_3]},
    {"feature_id": 200, "examples": [{**EXAMPLE_3, "max_activation": 1.0}]},
]

"""One loaded SAE, ready to encode: weights folded once so encoding is one matmul.

``pre = (x * s - b_dec * apply) @ W_enc + b_enc`` is rewritten, in float64 at load time, as
``x @ (s * W_enc) + (b_enc - (b_dec * apply) @ W_enc)`` for a constant ``s``, or
``s_t * (x @ W_enc) + (...)`` for SAELens' per-token ``constant_norm_rescale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.sae.architectures import NORMALIZATIONS, get_architecture


@dataclass(frozen=True)
class SaeMeta:
    """What a folder says about its SAE (read without loading the weights)."""

    sae_id: str
    layer: int
    d_in: int
    d_sae: int
    architecture: str
    layout: str
    folder: Path
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    norm_scaling_factor: float | None = None
    k: int | None = None
    scalar_threshold: float | None = None  # Llama Scope: one threshold for every feature
    model_id: str | None = None
    demo: bool = False
    description: str | None = None

    def __post_init__(self) -> None:
        arch = get_architecture(self.architecture)
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValueError(
                f"{self.folder}: normalize_activations {self.normalize_activations!r} "
                f"is not supported (supported: {NORMALIZATIONS})"
            )
        if arch.needs_k and not self.k:
            raise ValueError(f"{self.folder}: a topk SAE needs k")


@dataclass(frozen=True)
class SaeWeights:
    """Raw SAELens-convention tensors: W_enc [d_in, d_sae], b_enc [d_sae], b_dec [d_in],
    threshold [d_sae] (per-feature JumpReLU) or None."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None


class SaeEncoder:
    def __init__(self, meta: SaeMeta, weights: SaeWeights, *, device, dtype) -> None:
        self.meta = meta
        self.arch = get_architecture(meta.architecture)
        d_in, d_sae = meta.d_in, meta.d_sae
        w = weights.W_enc.to(torch.float64)
        if tuple(w.shape) != (d_in, d_sae):
            raise ValueError(f"{meta.folder}: W_enc is {tuple(w.shape)}, want {(d_in, d_sae)}")
        b_enc = weights.b_enc.to(torch.float64).reshape(d_sae)
        b_dec = weights.b_dec.to(torch.float64).reshape(d_in)
        scale = 1.0
        if meta.normalize_activations == "expected_average_only_in":
            # SAELens folds the release's factor; without one it skips folding (factor 1).
            scale = meta.norm_scaling_factor if meta.norm_scaling_factor is not None else 1.0
        self.per_token_norm = meta.normalize_activations == "constant_norm_rescale"
        bias = b_enc - (b_dec * float(meta.apply_b_dec_to_input)) @ w
        self.W = (w * scale).to(device=device, dtype=dtype).contiguous()
        self.bias = bias.to(device=device, dtype=dtype)
        threshold = None
        if self.arch.needs_threshold:
            if meta.scalar_threshold is not None:
                threshold = torch.tensor(meta.scalar_threshold, dtype=torch.float64)
            elif weights.threshold is not None:
                threshold = weights.threshold.to(torch.float64).reshape(d_sae)
            else:
                raise ValueError(f"{meta.folder}: a jumprelu SAE needs a threshold")
            threshold = threshold.to(device=device, dtype=dtype)
        self.threshold = threshold
        self.device = device
        self.dtype = dtype

    @property
    def d_sae(self) -> int:
        return self.meta.d_sae

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Residuals [n, d_in] -> feature activations [n, d_sae]."""
        x = x.to(device=self.device, dtype=self.dtype)
        if self.per_token_norm:
            coeff = (self.meta.d_in**0.5) / x.norm(dim=-1, keepdim=True)
            pre = torch.addcmul(self.bias, x @ self.W, coeff)
        else:
            pre = torch.addmm(self.bias, x, self.W)
        return self.arch.activate(pre, self.threshold, self.meta.k)

"""SAE architectures: a small string-keyed registry (SAELens names) over one shared encoder.

Every architecture shares SAELens' pre-processing::

    pre = (x * s - b_dec * apply_b_dec_to_input) @ W_enc + b_enc

where ``s`` is SAELens' activation normalisation: ``expected_average_only_in`` multiplies by the
release's constant ``norm_scaling_factor`` (SAELens folds it into the weights at load:
``W_enc *= s; b_dec /= s``, the same thing), ``constant_norm_rescale`` by
``sqrt(d_in) / ||x||`` per token, ``none`` by 1. Architectures differ only in the activation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale")


@dataclass(frozen=True)
class Architecture:
    name: str
    # (pre-activations [n, d_sae], threshold [d_sae] | None, k | None) -> activations [n, d_sae]
    activate: Callable[[torch.Tensor, torch.Tensor | None, int | None], torch.Tensor]
    needs_threshold: bool = False
    needs_k: bool = False


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture, *aliases: str) -> None:
    for name in (arch.name, *aliases):
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = arch


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown SAE architecture {name!r}; known: {sorted(ARCHITECTURES)}"
        ) from None


def _relu(pre: torch.Tensor, _threshold, _k) -> torch.Tensor:
    return torch.relu(pre)


def _jumprelu(pre: torch.Tensor, threshold: torch.Tensor | None, _k) -> torch.Tensor:
    # SAELens JumpReLUSAE.encode: relu(pre) * (pre > threshold)
    return torch.relu(pre) * (pre > threshold)


def _topk(pre: torch.Tensor, _threshold, k: int | None) -> torch.Tensor:
    # SAELens TopK: keep the k largest pre-activations, then ReLU them.
    if k is None:
        raise ValueError("a TopK SAE needs k")
    top = torch.topk(pre, k=int(k), dim=-1)
    return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))


register(Architecture("relu", _relu), "standard")
register(Architecture("jumprelu", _jumprelu, needs_threshold=True))
register(Architecture("topk", _topk, needs_k=True))

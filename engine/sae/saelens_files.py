"""The SAELens saved layout as this project writes it (the demo SAE, `train-sae`): the one
writer of ``cfg.json`` and ``sae_weights.safetensors``; layouts.py reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"


def saelens_cfg(
    *,
    architecture: str,
    d_in: int,
    d_sae: int,
    layer: int,
    model_name: str,
    prepend_bos: bool,
    sae_id: str,
    demo: bool,
    description: str,
    k: int | None = None,
) -> dict[str, Any]:
    """SAELens 6's saved ``cfg.json`` (``k`` for a TopK SAE) at ``blocks.<layer>.hook_resid_post``,
    plus the keys this service reads (``sae_id``, ``demo``, ``description``; SAELens ignores
    unknown keys). The one writer of the demo and trained SAEs' configs."""
    cfg: dict[str, Any] = {"architecture": architecture, "d_in": d_in, "d_sae": d_sae}
    if k is not None:
        cfg["k"] = k
    return cfg | {
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": model_name,
            "hook_name": f"blocks.{layer}.hook_resid_post",
            "hook_layer": layer,
            "prepend_bos": prepend_bos,
        },
        "sae_id": sae_id,
        "demo": demo,
        "description": description,
    }


def write_saelens(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    cfg: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write a SAELens folder: ``tensors`` (as ``dtype``), ``cfg`` (saelens_cfg's) as cfg.json."""
    from safetensors.torch import save_file

    save_file(
        {k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(folder / SAELENS_WEIGHTS)
    )
    (folder / SAELENS_CFG).write_text(json.dumps(cfg, indent=2) + "\n")

"""Weight layouts on disk: a registry of readers, each turning a folder into SaeMeta (cheap,
no weights) and SaeWeights (SAELens conventions).

- ``saelens``: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec,
  b_dec, threshold or log_threshold).
- ``llama_scope``: Llama Scope's release, ``hyperparams.json`` + ``checkpoints/final.safetensors``
  (encoder.weight [d_sae, d_in], encoder.bias, decoder.weight, decoder.bias), converted the way
  SAELens' ``llama_scope_sae_huggingface_loader`` converts it.

An optional ``playground.json`` beside the weights overrides ``sae_id``, ``demo``,
``description``, ``model_id`` and ``norm_scaling_factor``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from engine.sae.encoder import SaeMeta, SaeWeights
from engine.sae.saelens_files import SAELENS_CFG, SAELENS_WEIGHTS

SIDECAR = "playground.json"
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_LLAMA_SCOPE_FOLDER = re.compile(r"Llama3_1-8B-Base-L(\d+)([RMA])-(\d+)x", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[Path], bool]
    read_meta: Callable[[Path], SaeMeta]
    load_weights: Callable[[SaeMeta], SaeWeights]
    # (meta, feature ids) -> those rows of W_dec [n, d_in], as stored (SAE input units)
    decoder_rows: Callable[[SaeMeta, list[int]], torch.Tensor]


LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> None:
    if layout.name in LAYOUTS:
        raise ValueError(f"layout {layout.name!r} is already registered")
    LAYOUTS[layout.name] = layout


def detect_layout(folder: Path) -> Layout | None:
    return next((lay for lay in LAYOUTS.values() if lay.detect(folder)), None)


def is_complete_sae_dir(folder: Path) -> bool:
    """Whether ``folder`` holds an SAE in a known layout (its config and weights both present)."""
    return detect_layout(folder) is not None


def read_meta(folder: Path) -> SaeMeta:
    layout = detect_layout(folder)
    if layout is None:
        raise ValueError(f"{folder}: no known SAE layout ({', '.join(LAYOUTS)})")
    return _apply_sidecar(layout.read_meta(folder))


def load_weights(meta: SaeMeta) -> SaeWeights:
    return LAYOUTS[meta.layout].load_weights(meta)


def decoder_rows(meta: SaeMeta, feature_ids: list[int]) -> torch.Tensor:
    """Rows of W_dec [len(feature_ids), d_in] as the file stores them (read row by row, not
    the whole decoder)."""
    rows = LAYOUTS[meta.layout].decoder_rows(meta, feature_ids)
    if tuple(rows.shape) != (len(feature_ids), meta.d_in):
        raise ValueError(f"{meta.folder}: decoder rows are {tuple(rows.shape)}")
    return rows


def layer_of_hook(hook_name: str | None, folder: Path) -> int:
    match = _RESID_POST.match(hook_name or "")
    if match is None:
        raise ValueError(
            f"{folder}: hook {hook_name!r} is not a residual-stream hook "
            "(blocks.L.hook_resid_post), the only kind this service reads"
        )
    return int(match.group(1))


def _apply_sidecar(meta: SaeMeta) -> SaeMeta:
    path = meta.folder / SIDECAR
    if not path.is_file():
        return meta
    extra = json.loads(path.read_text())
    allowed = {"sae_id", "demo", "description", "model_id"}
    if meta.layout == "saelens":  # Llama Scope's factor comes from its own hyperparameters
        allowed.add("norm_scaling_factor")
    return replace(meta, **{k: v for k, v in extra.items() if k in allowed})


def _rows(path: Path, name: str, ids: list[int], *, transposed: bool) -> torch.Tensor:
    """``tensor[ids]`` (or ``tensor[:, ids].T`` for a transposed decoder) via safetensors
    slices, without reading the rest of the tensor."""
    with safe_open(str(path), framework="pt") as handle:
        view = handle.get_slice(name)
        parts = [view[:, i : i + 1].T if transposed else view[i : i + 1] for i in ids]
    return torch.cat(parts).to(torch.float32)


def _tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        return {name: handle.get_tensor(name) for name in names if name in keys}


# --- SAELens saved layout -------------------------------------------------------------------


def _saelens_detect(folder: Path) -> bool:
    return (folder / SAELENS_CFG).is_file() and (folder / SAELENS_WEIGHTS).is_file()


def _saelens_read_meta(folder: Path) -> SaeMeta:
    cfg: dict[str, Any] = json.loads((folder / SAELENS_CFG).read_text())
    # SAELens >= 6 nests the hook in "metadata"; older versions keep it at the top level.
    nested = cfg.get("metadata") or cfg.get("meta") or {}
    flat = {**nested, **cfg}
    architecture = flat.get("architecture", "standard")
    k = flat.get("k")
    if architecture == "standard" and flat.get("activation_fn") == "topk":  # SAELens < 6
        architecture, k = "topk", (flat.get("activation_fn_kwargs") or {}).get("k")
    return SaeMeta(
        sae_id=str(flat.get("sae_id") or flat.get("neuronpedia_id") or folder.name),
        layer=layer_of_hook(flat.get("hook_name"), folder),
        d_in=int(flat["d_in"]),
        d_sae=int(flat["d_sae"]),
        architecture=architecture,
        layout="saelens",
        folder=folder,
        apply_b_dec_to_input=bool(flat.get("apply_b_dec_to_input", True)),
        normalize_activations=flat.get("normalize_activations") or "none",
        norm_scaling_factor=flat.get("norm_scaling_factor"),
        k=int(k) if k else None,
        model_id=flat.get("model_name"),
        demo=bool(flat.get("demo", False)),
        description=flat.get("description"),
    )


def _saelens_load(meta: SaeMeta) -> SaeWeights:
    names = ["W_enc", "b_enc", "b_dec", "threshold", "log_threshold"]
    t = _tensors(meta.folder / SAELENS_WEIGHTS, names)
    threshold = t.get("threshold")
    if threshold is None and "log_threshold" in t:
        threshold = t["log_threshold"].exp()
    return SaeWeights(W_enc=t["W_enc"], b_enc=t["b_enc"], b_dec=t["b_dec"], threshold=threshold)


def _saelens_decoder_rows(meta: SaeMeta, ids: list[int]) -> torch.Tensor:
    return _rows(meta.folder / SAELENS_WEIGHTS, "W_dec", ids, transposed=False)


# --- Llama Scope released layout ------------------------------------------------------------

LLAMA_SCOPE_HPARAMS = "hyperparams.json"
LLAMA_SCOPE_WEIGHTS = Path("checkpoints") / "final.safetensors"
_LLAMA_SCOPE_NORM = {
    "dataset-wise": "expected_average_only_in",
    "token-wise": "constant_norm_rescale",
    "inference": "none",
    "none": "none",
}


def _llama_scope_detect(folder: Path) -> bool:
    return (folder / LLAMA_SCOPE_HPARAMS).is_file() and (folder / LLAMA_SCOPE_WEIGHTS).is_file()


def llama_scope_sae_id(folder: Path) -> str:
    """SAELens release name from the folder name: Llama3_1-8B-Base-L16R-8x -> llama_scope_lxr_8x."""
    match = _LLAMA_SCOPE_FOLDER.search(folder.name)
    if match is None:
        return folder.name
    return f"llama_scope_lx{match.group(2).lower()}_{match.group(3)}x"


def _llama_scope_read_meta(folder: Path) -> SaeMeta:
    hp: dict[str, Any] = json.loads((folder / LLAMA_SCOPE_HPARAMS).read_text())
    d_in = int(hp["d_model"])
    norm = _LLAMA_SCOPE_NORM.get(hp.get("norm_activation", "dataset-wise"))
    if norm is None:
        raise ValueError(f"{folder}: norm_activation {hp.get('norm_activation')!r} unsupported")
    factor = None
    if norm == "expected_average_only_in":
        # As SAELens: s = sqrt(d_model) / dataset_average_activation_norm["in"].
        factor = d_in**0.5 / float(hp["dataset_average_activation_norm"]["in"])
    act_fn = hp.get("act_fn", "jumprelu")
    architecture = {"jumprelu": "jumprelu", "topk": "topk", "relu": "relu"}.get(act_fn)
    if architecture is None:
        raise ValueError(f"{folder}: act_fn {act_fn!r} unsupported")
    scalar_threshold = None
    if architecture == "jumprelu":
        # SAELens scales the scalar threshold by the same factor it folds into W_enc.
        scalar_threshold = float(hp["jump_relu_threshold"]) * (factor or 1.0)
    return SaeMeta(
        sae_id=llama_scope_sae_id(folder),
        layer=layer_of_hook(hp.get("hook_point_in"), folder),
        d_in=d_in,
        d_sae=int(hp.get("d_sae") or d_in * int(hp["expansion_factor"])),
        architecture=architecture,
        layout="llama_scope",
        folder=folder,
        apply_b_dec_to_input=False,  # as SAELens' Llama Scope config
        normalize_activations=norm,
        norm_scaling_factor=factor,
        k=int(hp["top_k"]) if architecture == "topk" else None,
        scalar_threshold=scalar_threshold,
        model_id="meta-llama/Llama-3.1-8B",
        description=f"Llama Scope {folder.name}",
    )


def _llama_scope_load(meta: SaeMeta) -> SaeWeights:
    names = ["encoder.weight", "encoder.bias", "decoder.bias"]
    t = _tensors(meta.folder / LLAMA_SCOPE_WEIGHTS, names)
    return SaeWeights(
        W_enc=t["encoder.weight"].T,
        b_enc=t["encoder.bias"],
        b_dec=t["decoder.bias"],
        threshold=None,
    )


def _llama_scope_decoder_rows(meta: SaeMeta, ids: list[int]) -> torch.Tensor:
    # decoder.weight is [d_in, d_sae]: feature f is column f.
    return _rows(meta.folder / LLAMA_SCOPE_WEIGHTS, "decoder.weight", ids, transposed=True)


register(
    Layout("saelens", _saelens_detect, _saelens_read_meta, _saelens_load, _saelens_decoder_rows)
)
register(
    Layout(
        "llama_scope",
        _llama_scope_detect,
        _llama_scope_read_meta,
        _llama_scope_load,
        _llama_scope_decoder_rows,
    )
)

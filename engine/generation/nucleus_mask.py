"""Exact top-k/top-p masks for CPU logits without sorting the whole vocabulary.

vLLM's reference, ``apply_top_k_top_p_pytorch``, sorts every row (128,256 entries for Llama-3),
takes a float32 softmax of the sorted row, a cumulative sum in ascending order, and masks every
token whose cumulative mass is <= 1 - p (top-k first masks values below the k-th largest).

Here each row keeps only its candidates (logits within a few nats of its max), sorts those, and
decides where the reference's cut falls with a rigorous bound on how far the reference's float32
arithmetic can be from exact arithmetic (its sum over the sorted row is the only order-dependent
step; the bound is in ``nucleus_kernel._decide_row``). A row the bound cannot settle (a tie
across the cut, a cumulative mass too close to 1 - p, too flat a distribution, non-finite
logits) goes through the reference itself. Either way every row's mask is the reference's, ties
included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.generation.nucleus_reasons import FAST, NON_FINITE, REASONS

# Candidates are the logits within DELTAS[i] nats of the row's max, tried in order.
DELTAS = np.array([8.0, 12.0, 16.0, 24.0, 32.0], dtype=np.float64)
# Above this many candidates a row goes through the reference (sorting them costs about as much).
CAP = 32768

Reference = Callable[..., torch.Tensor]


@dataclass
class MaskStats:
    """Rows decided by the fast path and rows handed to the reference, by reason."""

    calls: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS.values(), 0))

    def add(self, reasons: torch.Tensor) -> None:
        self.calls += 1
        for code, count in zip(*torch.unique(reasons, return_counts=True), strict=True):
            self.rows[REASONS[int(code)]] += int(count)


def apply_top_k_top_p(
    logits: torch.Tensor,
    k: torch.Tensor | None,
    p: torch.Tensor,
    reference: Reference,
    stats: MaskStats | None = None,
) -> torch.Tensor:
    """Mask ``logits`` ([batch, vocab], float32, contiguous, CPU) in place exactly as
    ``reference(logits, k, p, allow_cpu_sync=True)`` would, and return it."""
    batch, vocab = logits.shape
    if batch == 0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    maxes = logits.amax(dim=-1)
    one_minus_p = (1 - p).to(torch.float64)  # the reference's float32 1 - p, widened exactly
    top_k = k.to(torch.int64) if k is not None else torch.full((batch,), vocab, dtype=torch.int64)
    # numba on first use only (see nucleus_kernel's docstring).
    from engine.generation.nucleus_kernel import decide_and_mask

    reasons = torch.where(torch.isfinite(maxes), FAST, NON_FINITE).to(torch.int8)
    decide_and_mask(
        logits.numpy(),
        probs.numpy(),
        maxes.numpy(),
        top_k.numpy(),
        one_minus_p.numpy(),
        DELTAS,
        CAP,
        reasons.numpy(),
    )
    slow = (reasons != FAST).nonzero().squeeze(1)
    if slow.numel():
        # Rows are independent in the reference (per-row sort, softmax and cumsum).
        logits[slow] = reference(
            logits[slow], None if k is None else k[slow], p[slow], allow_cpu_sync=True
        )
    if stats is not None:
        stats.add(reasons)
    return logits

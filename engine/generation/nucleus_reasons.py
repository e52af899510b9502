"""Why a row of the nucleus mask went through the reference instead of the fast path: the
codes the numba kernel (``nucleus_kernel.py``) writes and the mask (``nucleus_mask.py``)
counts, in a module of their own so neither imports the other for them."""

from __future__ import annotations

# Why a row went through the reference instead (0: the fast path decided it).
FAST = 0
NON_FINITE = 1  # NaN/inf logits or an all -inf row
TIE = 2  # equal logits on both sides of the cut: the reference's sort order decides
MARGIN = 3  # cumulative mass within the float32 error bound of 1 - p
FLAT = 4  # more candidates than CAP, or the cut lies below the deepest candidate threshold
DEEP_TAIL = 5  # p == 1 and logits so far below the max that float32 probabilities underflow
REASONS = {
    FAST: "fast",
    NON_FINITE: "non_finite",
    TIE: "tie",
    MARGIN: "margin",
    FLAT: "flat",
    DEEP_TAIL: "deep_tail",
}

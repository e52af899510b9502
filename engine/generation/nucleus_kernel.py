"""numba kernels of the sort-free top-k/top-p mask (engine.generation.nucleus_mask, which
imports this module on first use: importing numba's llvmlite before vLLM's CPU worker has set up
its kernel overrides breaks that set-up)."""

from __future__ import annotations

import numba
import numpy as np

from engine.generation.nucleus_reasons import DEEP_TAIL, FAST, FLAT, MARGIN, TIE

_U = 2.0**-24  # float32 unit roundoff
# Absolute slack on a cumulative probability: float64 cancellation in ours, subnormal roundings.
_ALPHA = 1e-12


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sum_f64(values):
    # Any order is fine: the bound only needs this sum to ~1e-12 relative.
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i]
    return total


@numba.njit(cache=True, nogil=True)
def _collect(xr, pr, theta, cap, cand_x, cand_p):
    """Copy the entries with ``xr >= theta`` (and their probabilities); -1 past ``cap``."""
    n = 0
    v = xr.shape[0]
    block = 32  # most blocks hold no candidate: test a whole block first (vectorises)
    start = 0
    while start < v:
        stop = min(start + block, v)
        hit = False
        for i in range(start, stop):
            hit |= xr[i] >= theta
        if hit:
            for i in range(start, stop):
                if xr[i] >= theta:
                    if n == cap:
                        return -1
                    cand_x[n] = xr[i]
                    cand_p[n] = pr[i]
                    n += 1
        start = stop
    return n


@numba.njit(cache=True, nogil=True)
def _decide_row(xr, pr, mx, k, t, deltas, cap, cand_x, cand_p):
    """(reason, threshold): mask ``x < threshold`` reproduces the reference when reason == FAST.

    The reference keeps the top m tokens where m counts the ranks r whose ascending cumulative
    probability C(r) = S(rank >= r) / S exceeds t = fl32(1 - p). Ours is computed in float64 from
    ``pr`` = softmax(row) (the same float32 exp values the reference's softmax uses, scaled by
    one constant), so it differs from the reference's float32 C(r) only by its roundings:
      - the reference's sum S over the sorted row: torch's vectorised reduction, W lanes (W in
        8..32) in ascending order, then a tree; an entry of descending rank d takes part in at
        most d/8 + 7 roundings, so |S_ref - S| <= u * sum(e_d * (d/8 + 7)) (entries below the
        candidates counted with d = V);
      - one rounding each for 1/S, e * (1/S), the float32 cumulative sum's result, two for ours,
        and the float64 cumulative sum (< 1e-9 relative).
    A cut is accepted only when both sides clear that bound (eta) and no tie straddles it.
    """
    v = xr.shape[0]
    if t == 0.0 and k >= v:
        # p == 1: the reference masks exactly the tokens whose float32 probability is 0. Within
        # 80 nats of the max none is (>= e^-80 / vocab); beyond 110 nats every one is (< 2^-150).
        lowest_kept = np.inf
        for i in range(v):
            gap = xr[i] - mx
            if gap >= -80.0:
                lowest_kept = min(lowest_kept, xr[i])
            elif gap > -110.0:
                return DEEP_TAIL, -np.inf
        return FAST, lowest_kept
    total_all = -1.0
    for delta in deltas:
        theta = np.float32(mx - delta)
        n = _collect(xr, pr, theta, cap, cand_x, cand_p)
        if n < 0:
            return FLAT, -np.inf
        order = np.argsort(-cand_x[:n])
        sx = cand_x[:n][order]
        sp = cand_p[:n][order]
        if k < v:
            if n < k:
                continue  # the k-th largest lies below theta
            thr_k = sx[k - 1]
            nk = k
            while nk < n and sx[nk] == thr_k:  # the reference keeps ties of the k-th value
                nk += 1
            if t == 0.0:
                return FAST, thr_k  # all of the top k lie within delta of the max: none is 0
            total = _sum_f64(sp[:nk])
            tail = 0.0  # entries below the k-th value are -inf before the reference's softmax
        else:
            if total_all < 0.0:
                total_all = _sum_f64(pr)
            total = total_all
            nk = n
            tail = max(total - _sum_f64(sp[:nk]), 0.0)
        acc = tail * (v / 8.0 + 7.0)
        for j in range(nk):
            acc += sp[j] * ((j + 1) / 8.0 + 7.0)
        eta = 1.001 * _U * acc / total + 8.0 * _U + 1e-9
        # m: the top tokens whose cumulative mass from the bottom exceeds t (the first always).
        m = 1
        above = np.float64(sp[0])  # mass of the top m tokens (float64: see cand_p)
        while m < nk and (total - above) / total > t:
            above += sp[m]
            m += 1
        keep_ok = m == 1 or (total - above + sp[m - 1]) / total * (1.0 - eta) - _ALPHA > t
        if m < nk:
            if sx[m] == sx[m - 1]:
                return TIE, -np.inf
            cut_ok = (total - above) / total * (1.0 + eta) + _ALPHA < t
        elif k < v:
            cut_ok = True  # everything below the top k is masked already
        else:
            cut_ok = tail / total * (1.0 + eta) + _ALPHA < t
        if keep_ok and cut_ok:
            return FAST, sx[m - 1]
        if k < v or (m < nk and tail * (v / 8.0 + 7.0) < 0.5 * acc):
            return MARGIN, -np.inf  # a deeper candidate set would not tighten the bound
    return FLAT, -np.inf


@numba.njit(cache=True, nogil=True)
def decide_and_mask(x, probs, maxes, top_k, one_minus_p, deltas, cap, reasons):
    """Decide each row (``reasons`` in: FAST to try, out: why the reference must do it) and
    mask in place the rows decided here."""
    cand_x = np.empty(min(cap, x.shape[1]), dtype=np.float32)
    cand_p = np.empty(min(cap, x.shape[1]), dtype=np.float64)  # sums must stay float64
    for r in range(x.shape[0]):
        if reasons[r] != FAST:
            continue
        reason, threshold = _decide_row(
            x[r], probs[r], maxes[r], top_k[r], one_minus_p[r], deltas, cap, cand_x, cand_p
        )
        reasons[r] = reason
        if reason == FAST and threshold > -np.inf:
            row = x[r]
            for i in range(row.shape[0]):
                if row[i] < threshold:
                    row[i] = -np.inf

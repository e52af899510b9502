"""Compare a service timeline with a float64 reference, tolerating only features whose
float64 gate margin is within float32 rounding (ambiguous either way)."""

from __future__ import annotations

import torch

from tests.engine.sae.builders import RefSae, reference_pre


def gate_margin(sae: RefSae, x: torch.Tensor) -> torch.Tensor:
    """How far each feature is from switching on/off (the decision the encoder makes)."""
    pre = reference_pre(sae, x)
    if sae.architecture == "jumprelu":
        return torch.minimum(pre - sae.threshold, pre)
    if sae.architecture == "topk":
        kth = torch.topk(pre, sae.k + 1, dim=-1).values
        boundary = (kth[:, sae.k - 1 : sae.k] + kth[:, sae.k :]) / 2
        return torch.minimum(pre - boundary, pre)
    return pre


def assert_timeline_matches(features_per_pos, ref: torch.Tensor, margin: torch.Tensor, top_k: int):
    """``features_per_pos``: per position a list of (feature_id, activation). Returns the
    number of (position, feature) pairs checked."""
    assert len(features_per_pos) == ref.shape[0]
    checked = ambiguous_total = 0
    for pos, got in enumerate(features_per_pos):
        row = ref[pos]
        tol = 1e-4 * (1.0 + float(row.abs().max()))
        ambiguous = set(torch.nonzero(margin[pos].abs() < tol).flatten().tolist())
        values = [a for _, a in got]
        assert values == sorted(values, reverse=True), f"position {pos} not descending"
        assert len(got) <= top_k and all(a > 0 for a in values)
        got_ids = {f for f, _ in got}
        for fid, act in got:
            if fid in ambiguous:
                continue
            assert abs(act - float(row[fid])) <= tol, (pos, fid, act, float(row[fid]))
            checked += 1
        # Every feature clearly among the top_k positive ones must be there.
        ranked = torch.argsort(row, descending=True)[:top_k].tolist()
        kth = float(row[ranked[-1]]) if len(ranked) == top_k else 0.0
        for fid in ranked:
            value = float(row[fid])
            if value > tol and fid not in ambiguous and value > kth + tol:
                assert fid in got_ids, (pos, fid, value)
        ambiguous_total += len(ambiguous & got_ids)
    assert ambiguous_total <= max(2, checked // 100), "too many ambiguous features to trust"
    return checked

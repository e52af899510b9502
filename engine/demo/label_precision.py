"""How good demo labels are: label precision on held-out top activations (docs/sae.md,
"Labels"), the one definition train-sae, the tests and the docs' figures use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.demo.labels import MIN_HITS, Hit, Label


@dataclass(frozen=True)
class Precision:
    value: float  # mean over judged features of the share of held-out top tokens the label names
    judged: int  # labelled features with at least MIN_HITS held-out activations


def label_precision(
    labels: Mapping[int, Label], heldout: Mapping[int, Sequence[Hit]], diverse: bool = False
) -> Precision:
    """For each labelled feature with at least MIN_HITS held-out activations, the share of its
    held-out top activations that its label names (``Label.names``: its tokens, their class or
    ending, or its context word in the window); averaged over those features. "diverse:"
    features are not labelled and not judged, unless ``diverse`` (a figure for comparison)."""
    shares = []
    for feature, label in labels.items():
        hits = heldout.get(feature, ())
        if len(hits) < MIN_HITS or (label.diverse and not diverse):
            continue
        shares.append(sum(label.names(h.tokens, h.index) for h in hits) / len(hits))
    return Precision(value=sum(shares) / len(shares) if shares else 0.0, judged=len(shares))

"""What each trained feature means: its top activations in their contexts, a short label saying
what they share (``labels.py``), its max-activating contexts (the examples file), and how well
labels name held-out activations.

TopK codes are sparse (k latents per token), so every collected token is encoded once into
``[N, k]`` values and indices; a feature's top activations are then one sort of the
``N * k`` (feature, value, row) triples.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.demo.label_precision import Precision
from engine.demo.label_precision import label_precision as labels_precision
from engine.demo.labels import Hit, Label, make_label
from engine.demo.residuals import ResidualSet, Sequences
from engine.demo.trainer import TopKSae
from engine.sae.sidecars import EXAMPLES_FORMAT

LABEL_TOP_N = 20  # a label is made from, and judged on, a feature's top-20 activations
EXAMPLES_PER_FEATURE = 5
CONTEXT_BEFORE = 8
CONTEXT_AFTER = 3


@dataclass(frozen=True)
class SparseCodes:
    values: torch.Tensor  # [N, k] float32, ReLU'd (0 where fewer than k are positive)
    indices: torch.Tensor  # [N, k] int64


@dataclass(frozen=True)
class TopActivations:
    """Per feature its strongest rows, descending; ``rows`` is -1 and ``values`` 0 past the
    feature's active rows."""

    rows: np.ndarray  # [d_sae, n] int64
    values: np.ndarray  # [d_sae, n] float32

    def of(self, feature: int) -> list[tuple[int, float]]:
        keep = self.rows[feature] >= 0
        return list(
            zip(self.rows[feature][keep].tolist(), self.values[feature][keep].tolist(), strict=True)
        )


def encode_all(sae: TopKSae, acts: torch.Tensor, chunk: int = 8192) -> SparseCodes:
    values, indices = [], []
    for start in range(0, acts.shape[0], chunk):
        v, i = sae.encode_topk(acts[start : start + chunk])
        values.append(v)
        indices.append(i)
    return SparseCodes(torch.cat(values), torch.cat(indices))


def top_activations(
    codes: SparseCodes, d_sae: int, n: int, rows: np.ndarray | None = None
) -> TopActivations:
    """Each feature's ``n`` largest activations among ``rows`` (default: every row)."""
    k = codes.values.shape[1]
    values = codes.values.numpy()
    indices = codes.indices.numpy()
    if rows is None:
        rows = np.arange(values.shape[0])
    feature = indices[rows].reshape(-1)
    value = values[rows].reshape(-1)
    row: np.ndarray = np.repeat(rows, k)
    live = value > 0
    feature, value, row = feature[live], value[live], row[live]
    order = np.lexsort((-value, feature))  # by feature, then activation descending
    feature, value, row = feature[order], value[order], row[order]
    starts = np.asarray(np.searchsorted(feature, np.arange(d_sae), side="left"))
    ends = np.asarray(np.searchsorted(feature, np.arange(d_sae), side="right"))
    out_rows: np.ndarray = np.full((d_sae, n), -1, dtype=np.int64)
    out_values: np.ndarray = np.zeros((d_sae, n), dtype=np.float32)
    for f in np.nonzero(ends > starts)[0]:
        take = min(n, int(ends[f] - starts[f]))
        out_rows[f, :take] = row[starts[f] : starts[f] + take]
        out_values[f, :take] = value[starts[f] : starts[f] + take]
    return TopActivations(out_rows, out_values)


# (seq index, position) of a residual row -> the tokens around it, its index among them, and
# which text it is in: what a label is made from and judged on.
WindowOf = Callable[[int], tuple[list[str], int, int]]


def window_of(
    residuals: ResidualSet, sequences: Sequences, token_text: Callable[[int], str]
) -> WindowOf:
    """The context window of a residual row (as the examples file keeps them)."""
    seq = residuals.seq.numpy()
    pos = residuals.pos.numpy()

    def window(row: int) -> tuple[list[str], int, int]:
        s, p = int(seq[row]), int(pos[row])
        ids = sequences.token_ids[s]
        start, end = max(0, p - CONTEXT_BEFORE), min(len(ids), p + CONTEXT_AFTER + 1)
        return [token_text(t) for t in ids[start:end]], p - start, s

    return window


def hits_of(top: TopActivations, feature: int, window: WindowOf) -> list[Hit]:
    hits = []
    for row, value in top.of(feature):
        tokens, index, text = window(row)
        hits.append(Hit(tokens, index, float(value), window=text))
    return hits


def make_labels(top: TopActivations, window: WindowOf) -> dict[int, Label]:
    """Each feature's label from its top activations in their contexts (``labels.py``)."""
    labels: dict[int, Label] = {}
    for feature in range(top.rows.shape[0]):
        label = make_label(hits_of(top, feature, window))
        if label is not None:
            labels[feature] = label
    return labels


def label_precision(
    labels: dict[int, Label], heldout_top: TopActivations, window: WindowOf
) -> Precision:
    """``labels.label_precision`` on the held-out top activations in their windows."""
    heldout = {feature: hits_of(heldout_top, feature, window) for feature in labels}
    return labels_precision(labels, heldout)


def iter_examples(
    codes: SparseCodes,
    residuals: ResidualSet,
    sequences: Sequences,
    token_text: Callable[[int], str],
    d_sae: int,
) -> Iterator[dict]:
    """Per active feature, its strongest contexts (one per text): the tokens around the max
    with this feature's activation at each (positions >= 1; a token that was not encoded, an
    attention sink, has ``None``)."""
    top = top_activations(codes, d_sae, n=EXAMPLES_PER_FEATURE * 4)
    seq = residuals.seq.numpy()
    pos = residuals.pos.numpy()
    row_at = {(int(s), int(p)): row for row, (s, p) in enumerate(zip(seq, pos, strict=True))}
    values, indices = codes.values, codes.indices
    for feature in range(d_sae):
        examples = []
        seen: set[int] = set()
        for row, value in top.of(feature):
            s = int(seq[row])
            if s in seen:
                continue
            seen.add(s)
            ids = sequences.token_ids[s]
            p = int(pos[row])
            start, end = max(1, p - CONTEXT_BEFORE), min(len(ids), p + CONTEXT_AFTER + 1)
            rows = [row_at.get((s, q)) for q in range(start, end)]
            encoded = torch.tensor([r for r in rows if r is not None])
            acts = iter((values[encoded] * (indices[encoded] == feature)).sum(dim=1).tolist())
            window_ids = ids[start:end]
            examples.append(
                {
                    "token_ids": window_ids,
                    "tokens": [token_text(t) for t in window_ids],
                    "activations": [None if r is None else round(next(acts), 3) for r in rows],
                    "max_index": p - start,
                    "max_activation": round(float(value), 3),
                }
            )
            if len(examples) == EXAMPLES_PER_FEATURE:
                break
        if examples:
            yield {"feature_id": feature, "examples": examples}


def write_examples(path: Path, records: Iterator[dict]) -> int:
    """JSON lines: a header line, then one line per feature in feature order."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        header = {
            "format": EXAMPLES_FORMAT,
            "context_before": CONTEXT_BEFORE,
            "context_after": CONTEXT_AFTER,
        }
        out.write(json.dumps(header) + "\n")
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count

"""What each trained feature means: its top-activating tokens, a short label naming them, its
max-activating contexts (the examples file), and how well labels predict held-out tokens.

TopK codes are sparse (k latents per token), so every collected token is encoded once into
``[N, k]`` values and indices; a feature's top activations are then one sort of the
``N * k`` (feature, value, row) triples.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.demo.residuals import ResidualSet, Sequences
from engine.demo.trainer import TopKSae
from engine.sae.sidecars import EXAMPLES_FORMAT

LABEL_TOP_N = 20  # a label is made from, and judged on, a feature's top-20 activations
LABEL_MAX_NAMES = 3
LABEL_MIN_HITS = 3  # a feature active on fewer tokens gets no label
MIXED_SHARE = 0.25  # top token under 25 % of the top-20: the label says "mixed"
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


@dataclass(frozen=True)
class Label:
    text: str  # what labels.json holds, e.g. "wake / awaken / woke"
    keys: frozenset[str]  # the normalised tokens it names


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


def token_key(text: str) -> str:
    """How labels compare tokens: case and surrounding spaces ignored."""
    stripped = text.strip().lower()
    return stripped if stripped else text


def token_display(text: str) -> str:
    stripped = text.strip()
    if stripped:
        return stripped
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(text[:1], repr(text))


def make_label(tokens: list[str]) -> Label | None:
    """A label from a feature's top tokens (strongest first): the up-to-3 most frequent
    tokens, ties broken by strength; "mixed: ..." when none is a quarter of them."""
    if len(tokens) < LABEL_MIN_HITS:
        return None
    counts = collections.Counter(token_key(t) for t in tokens)
    first_seen: dict[str, str] = {}
    for t in tokens:
        first_seen.setdefault(token_key(t), t)
    ranked = sorted(counts, key=lambda key: -counts[key])  # stable: strength breaks ties
    names = ranked[:LABEL_MAX_NAMES]
    text = " / ".join(token_display(first_seen[key]) for key in names)
    if counts[names[0]] < MIXED_SHARE * len(tokens):
        text = f"mixed: {text}"
    return Label(text=text, keys=frozenset(names))


def make_labels(
    top: TopActivations, token_ids: torch.Tensor, token_text: Callable[[int], str]
) -> dict[int, Label]:
    labels: dict[int, Label] = {}
    ids = token_ids.numpy()
    for feature in range(top.rows.shape[0]):
        rows = [row for row, _ in top.of(feature)]
        label = make_label([token_text(int(ids[row])) for row in rows])
        if label is not None:
            labels[feature] = label
    return labels


@dataclass(frozen=True)
class Precision:
    value: float  # mean over judged features of the share of held-out top tokens the label names
    judged: int  # labelled features with at least LABEL_MIN_HITS held-out activations


def label_precision(
    labels: dict[int, Label],
    heldout_top: TopActivations,
    token_ids: torch.Tensor,
    token_text: Callable[[int], str],
) -> Precision:
    ids = token_ids.numpy()
    shares = []
    for feature, label in labels.items():
        rows = [row for row, _ in heldout_top.of(feature)]
        if len(rows) < LABEL_MIN_HITS:
            continue
        named = sum(token_key(token_text(int(ids[row]))) in label.keys for row in rows)
        shares.append(named / len(rows))
    return Precision(value=float(np.mean(shares)) if shares else 0.0, judged=len(shares))


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

"""The committed demo SAE's labels (engine/demo/data/demo-trained-l15/labels.json): made from its
examples file by ``python -m engine.demo.relabel``, and judged on its held-out top activations
(tests/engine/demo/data/demo_l15_heldout_top.json.xz, written by ``bench/demo_heldout_top.py``)
with the label precision measure of ``train-sae``."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from engine.demo.label_precision import label_precision
from engine.demo.labels import Hit, Label, labels_from_examples
from engine.demo.relabel import read_examples
from engine.demo.train_sae import COMMITTED_SAE_DIR
from engine.sae.sidecars import LABELS_FILENAME

HELDOUT = Path(__file__).parent / "data" / "demo_l15_heldout_top.json.xz"
D_SAE = 2048


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return read_examples(COMMITTED_SAE_DIR)


@pytest.fixture(scope="module")
def labels(records: list[dict]) -> dict[int, Label]:
    return labels_from_examples(records)


@pytest.fixture(scope="module")
def heldout() -> dict[int, list[Hit]]:
    data = json.loads(lzma.decompress(HELDOUT.read_bytes()).decode("utf-8"))
    return {
        int(f): [Hit(tokens, index, value, window=n) for n, (tokens, index, value) in enumerate(v)]
        for f, v in data.items()
    }


def test_the_committed_labels_are_the_labeler_s(labels: dict[int, Label]):
    committed = json.loads((COMMITTED_SAE_DIR / LABELS_FILENAME).read_text(encoding="utf-8"))
    assert committed == {str(f): label.text for f, label in sorted(labels.items())}


def test_label_precision_on_held_out_text(labels: dict[int, Label], heldout: dict[int, list[Hit]]):
    precision = label_precision(labels, heldout)
    labelled = sum(not label.diverse for label in labels.values())
    print(f"precision {precision.value:.4f} over {precision.judged} judged, {labelled} labelled")
    assert precision.value >= 0.6 and precision.judged >= 1000
    assert labelled / D_SAE >= 0.5  # the rest say "diverse: ..."
    # Every feature with a text, "diverse:" ones judged by the tokens they list: still above the
    # previous labeler's 0.4516 (which labelled 2043 features).
    everything = label_precision(labels, heldout, diverse=True)
    assert everything.value > 0.4516 and everything.judged == 1954

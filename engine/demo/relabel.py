"""An SAE folder's labels.json from its examples file alone (the weights are not read): how the
committed demo SAE's labels were made, and the one writer of labels.json (train-sae uses it
too). ``python -m engine.demo.relabel <sae folder>``."""

from __future__ import annotations

import json
from pathlib import Path

from engine.demo.labels import Label, labels_from_examples
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME


def read_examples(sae_dir: Path) -> list[dict]:
    """An SAE folder's examples-file records (``{feature_id, examples}``), header left out."""
    lines = (sae_dir / EXAMPLES_FILENAME).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:] if line.strip()]


def write_labels(path: Path, labels: dict[int, Label]) -> None:
    """labels.json: each feature's text by its id (the "diverse:" ones included)."""
    text = json.dumps({str(f): label.text for f, label in sorted(labels.items())}, indent=0)
    path.write_text(text + "\n", encoding="utf-8")


def relabel_from_examples(sae_dir: Path) -> int:
    """Rewrite an SAE folder's labels.json from its examples file; returns how many features it
    labels (the "diverse:" ones have a text but no label)."""
    labels = labels_from_examples(read_examples(sae_dir))
    write_labels(sae_dir / LABELS_FILENAME, labels)
    return sum(not label.diverse for label in labels.values())


if __name__ == "__main__":  # python -m engine.demo.relabel <sae folder>
    import sys

    folder = Path(sys.argv[1])
    print(f"{relabel_from_examples(folder)} features labelled in {folder / LABELS_FILENAME}")

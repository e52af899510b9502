"""Files beside an SAE's weights that explain its features: ``labels.json`` (a short label per
feature) and the examples file (``feature_examples.jsonl``: max-activating contexts per
feature; format in docs/sae.md). Read on first use and cached; the examples file is indexed
by byte offset, so one feature's examples cost one line's read. A label search also matches
the words of a feature's examples (``context_words``), read from the same file."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from engine.sae.encoder import SaeMeta

logger = logging.getLogger(__name__)

SaeKey = tuple[str, int]
T = TypeVar("T")
LABELS_FILENAME = "labels.json"
EXAMPLES_FILENAME = "feature_examples.jsonl"
EXAMPLES_FORMAT = "playground.feature_examples/1"


def read_labels(path: Path) -> dict[int, str]:
    """``{"123": "text"}`` or a Neuronpedia-style list ``[{"index": 123, "description": ...}]``."""
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    items = (
        raw.items()
        if isinstance(raw, dict)
        else ((r.get("index", r.get("feature_id")), r.get("description")) for r in raw)
    )
    return {int(k): str(v) for k, v in items if k is not None and v}


_WORD = re.compile(r"[^\W_]{2,}")
MAX_CONTEXT_WORDS = 200  # per feature


def context_words(examples: list[dict]) -> str:
    """The distinct words of a feature's example windows, lower case, in order of first use
    (each window's tokens joined into text: " S" "ea" is "sea")."""
    seen: dict[str, None] = {}
    for example in examples:
        for word in _WORD.findall("".join(str(t) for t in example.get("tokens", ()))):
            seen.setdefault(word.lower(), None)
    return " ".join(list(seen)[:MAX_CONTEXT_WORDS])


def read_context_words(path: Path) -> dict[int, str]:
    """feature id -> ``context_words`` of its examples, for every feature of an examples file."""
    if not path.is_file():
        return {}
    words: dict[int, str] = {}
    with path.open("rb") as handle:
        handle.readline()  # the header (checked by index_examples)
        for line in handle:
            if line.strip():
                record = json.loads(line)
                text = context_words(record.get("examples", []))
                if text:
                    words[int(record["feature_id"])] = text
    return words


def index_examples(path: Path) -> dict[int, tuple[int, int]]:
    """feature id -> (byte offset, length) of its line; the first line is the header."""
    index: dict[int, tuple[int, int]] = {}
    with path.open("rb") as handle:
        header = json.loads(handle.readline() or b"{}")
        if header.get("format") != EXAMPLES_FORMAT:
            raise ValueError(f"{path}: format {header.get('format')!r}, want {EXAMPLES_FORMAT}")
        offset = handle.tell()
        for line in handle:
            if line.strip():
                index[int(json.loads(line)["feature_id"])] = (offset, len(line))
            offset += len(line)
    return index


class Sidecars:
    def __init__(self, *, labels_filename: str, examples_filename: str) -> None:
        self.labels_filename = labels_filename
        self.examples_filename = examples_filename
        self._labels: dict[SaeKey, dict[int, str]] = {}
        self._examples: dict[SaeKey, dict[int, tuple[int, int]]] = {}
        self._words: dict[SaeKey, dict[int, str]] = {}
        self._lock = threading.Lock()

    def has_labels(self, meta: SaeMeta) -> bool:
        return (meta.folder / self.labels_filename).is_file()

    def has_examples(self, meta: SaeMeta) -> bool:
        return (meta.folder / self.examples_filename).is_file()

    def _once(self, cache: dict[SaeKey, T], meta: SaeMeta, read: Callable[[], T]) -> T:
        """``read()`` for this SAE the first time it is asked, the kept answer after."""
        key = (meta.sae_id, meta.layer)
        with self._lock:
            if key not in cache:
                cache[key] = read()
            return cache[key]

    def labels(self, meta: SaeMeta) -> dict[int, str]:
        return self._once(
            self._labels, meta, lambda: read_labels(meta.folder / self.labels_filename)
        )

    def context_words(self, meta: SaeMeta) -> dict[int, str]:
        """feature id -> the words of its examples' contexts (``{}`` without an examples file)."""
        return self._once(
            self._words, meta, lambda: read_context_words(meta.folder / self.examples_filename)
        )

    def examples(self, meta: SaeMeta, feature_id: int) -> list[dict]:
        """The feature's examples (``[]`` when it has none or the SAE has no examples file)."""
        path = meta.folder / self.examples_filename
        if not path.is_file():
            return []
        where = self._once(self._examples, meta, lambda: index_examples(path)).get(feature_id)
        if where is None:
            return []
        offset, length = where
        with path.open("rb") as handle:
            handle.seek(offset)
            return json.loads(handle.read(length))["examples"]

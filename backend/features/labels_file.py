"""Reading a labels file for ``playground import-labels``.

Accepted: a JSON object ``{"<id>": "<label>"}`` (an SAE folder's ``labels.json``, or the SAE
service's bulk answer with the map under ``labels``); a JSON array, or JSON lines, of objects
naming the feature by ``index``, ``feature_id`` or ``feature`` and its text by
``description``, ``label`` or ``explanation`` (Neuronpedia's explanation exports are JSON lines
of this shape, usually gzipped). ``.gz`` files are read through gzip. When a feature has
several explanations the first non-empty one wins.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

ID_KEYS = ("index", "feature_id", "feature")
TEXT_KEYS = ("description", "label", "explanation")


class LabelsFileError(ValueError):
    """The file is not a labels file this command reads."""


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _feature_id(value: Any) -> int:
    if isinstance(value, bool):
        raise LabelsFileError(f"not a feature id: {value!r}")
    try:
        fid = int(value)
    except (TypeError, ValueError) as exc:
        raise LabelsFileError(f"not a feature id: {value!r}") from exc
    if fid < 0:
        raise LabelsFileError(f"not a feature id: {value!r}")
    return fid


def _from_records(records: Iterable[Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for record in records:
        if not isinstance(record, dict):
            raise LabelsFileError("each record must be a JSON object")
        id_key = next((k for k in ID_KEYS if k in record), None)
        text_key = next((k for k in TEXT_KEYS if isinstance(record.get(k), str)), None)
        if id_key is None or text_key is None:
            continue
        fid = _feature_id(record[id_key])
        if fid not in out and record[text_key].strip():
            out[fid] = record[text_key]
    return out


def read_labels(path: Path) -> dict[int, str]:
    data = _read_bytes(path)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            lines = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise LabelsFileError(f"{path}: neither JSON nor JSON lines: {exc}") from exc
        return _from_records(lines)
    if isinstance(parsed, dict):
        mapping = parsed.get("labels", parsed)
        if not isinstance(mapping, dict):
            raise LabelsFileError("`labels` must be an object of id -> label")
        return {_feature_id(k): v for k, v in mapping.items() if isinstance(v, str) and v.strip()}
    if isinstance(parsed, list):
        return _from_records(parsed)
    raise LabelsFileError("a labels file is a JSON object, a JSON array or JSON lines")

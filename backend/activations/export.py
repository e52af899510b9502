"""A stored run as a download, generated in chunks (never the whole body at once).

CSV: a header, then one line per (position, feature) in timeline order, with the columns of the
rows route plus ``segment`` and ``special``; text fields always quoted (RFC 4180, ``""`` for a
quote), numbers as Python writes them (a float reads back to the same value). JSON: ``{"run":
<the run read>, "top_features": [...], "rows": [<the rows route's items>]}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import orjson

from backend.activations import derive, json_parts
from backend.activations.packed import OUTPUT, SPECIAL, Timeline

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"
CSV_HEADER = "token_position,step,segment,special,token_id,token,rank,feature_id,activation_value\n"
CHUNK_BYTES = 256 * 1024
POSITIONS_PER_CHUNK = 512
ROWS_PER_JSON_CHUNK = 4096
EXPORT_TOP_FEATURES = 1000
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def csv_text(value: str) -> str:
    """One quoted CSV field."""
    return '"' + value.replace('"', '""') + '"'


def file_name(stem: str, extension: str) -> str:
    """A file name safe on every system: letters, digits, ``_ . -`` only, bounded."""
    return _UNSAFE_NAME.sub("_", stem)[:150] + "." + extension


def content_disposition(name: str) -> str:
    return f'attachment; filename="{name}"'


def chunked(parts: Iterable[str], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Join small text parts into chunks of about ``size`` bytes."""
    buffer: list[str] = []
    length = 0
    for part in parts:
        buffer.append(part)
        length += len(part)
        if length >= size:
            yield "".join(buffer).encode()
            buffer, length = [], 0
    if buffer:
        yield "".join(buffer).encode()


def _csv_head(pos: int, flag: int, token_id: int, token: str, output_start: int) -> str:
    """The position's columns, up to and including the comma before ``rank``."""
    out = flag & OUTPUT
    return (
        f"{pos},{pos - output_start if out else ''},{'output' if out else 'prompt'},"
        f"{'true' if flag & SPECIAL else 'false'},{token_id},{csv_text(token)},"
    )


def csv_chunks(timeline: Timeline | None, tokens: list[str], output_start: int) -> Iterator[bytes]:
    """The run's rows as CSV, a chunk per ``POSITIONS_PER_CHUNK`` positions. Each line is put
    together by one ``str.join`` over column lists filled by slice (C loops, no per-line
    formatting); activations are written by orjson (shortest round-trip form)."""
    yield CSV_HEADER.encode()
    if timeline is None:
        return
    offsets = timeline.offsets
    flags = timeline.flags.tolist()
    token_ids = timeline.token_ids.tolist()
    for start in range(0, timeline.n_positions, POSITIONS_PER_CHUNK):
        stop = min(start + POSITIONS_PER_CHUNK, timeline.n_positions)
        lo, hi = int(offsets[start]), int(offsets[stop])
        n = hi - lo
        if n == 0:
            continue
        heads = [
            _csv_head(p, flags[p], token_ids[p], tokens[p], output_start)
            for p in range(start, stop)
        ]
        counts = np.diff(offsets[start : stop + 1])
        pos_of: np.ndarray = np.repeat(np.arange(stop - start), counts)
        ranks = (np.arange(lo, hi) - offsets[start:stop][pos_of] + 1).tolist()
        acts = orjson.dumps(timeline.activations[lo:hi].tolist())
        parts = [","] * (6 * n)
        parts[0::6] = [heads[p] for p in pos_of.tolist()]
        rank_text = [f"{r}," for r in range(int(counts.max()) + 1)]
        parts[1::6] = [rank_text[r] for r in ranks]
        parts[2::6] = list(map(str, timeline.feature_ids[lo:hi].tolist()))
        parts[4::6] = acts[1:-1].decode().split(",")
        parts[5::6] = ["\n"] * n
        yield "".join(parts).encode()


def json_chunks(
    run: Any,
    timeline: Timeline | None,
    tokens: list[str] | None,
    output_start: int,
    run_timeline_json: str | None = None,
) -> Iterator[bytes]:
    """``{"run", "top_features", "rows"}``; the rows written a chunk at a time. With
    ``run_timeline_json`` the run's timeline is in its ``json_parts.SLOT`` and is written from
    that text a slice at a time."""
    top = derive.top_features(timeline, limit=EXPORT_TOP_FEATURES) if timeline is not None else []
    after_run = b',"top_features":' + orjson.dumps(top) + b',"rows":['
    if run_timeline_json is None:
        yield b'{"run":' + orjson.dumps(run) + after_run
    else:
        head, tail = json_parts.envelope(run)
        yield b'{"run":' + head
        yield from json_parts.part_chunks(run_timeline_json)
        yield tail + after_run
    if timeline is not None:
        total = timeline.n_features
        for offset in range(0, total, ROWS_PER_JSON_CHUNK):
            flt = derive.RowFilter(limit=ROWS_PER_JSON_CHUNK, offset=offset)
            _, rows = derive.rows(timeline, tokens, output_start, flt)
            body = orjson.dumps(rows)[1:-1]
            yield (b"," + body) if offset else body
    yield b"]}"

"""A JSON answer around one large part that is already JSON text (a stored run's timeline),
written in parts: the envelope, then the part as fetched, a slice at a time, then the rest of
the envelope. The bytes are exactly ``orjson.dumps`` of the content with the part embedded as
an ``orjson.Fragment`` (``common.responses.OrjsonResponse``), without that one object holding
them all.

The part's place is marked by ``SLOT``, a fragment of one raw NUL byte: orjson escapes NUL in
every string it writes (``\\u0000``) and JSON text holds none, so the only raw NUL in the
envelope's bytes is the slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

SLOT = orjson.Fragment(b"\x00")
# Characters (of a str part) or bytes (of a bytes part) per chunk: at most 1 MiB of UTF-8.
PART_CHUNK = 256 * 1024


def envelope(content: Any) -> tuple[bytes, bytes]:
    """``content``'s JSON (as ``OrjsonResponse`` writes it) split at its one ``SLOT``."""
    head, slot, tail = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY).partition(b"\x00")
    if not slot or b"\x00" in tail:
        raise ValueError("the content must hold exactly one SLOT")
    return head, tail


def part_chunks(part: str | bytes) -> Iterator[bytes]:
    """``part`` as UTF-8, a slice at a time (a str is sliced by characters, so every slice
    encodes on its own)."""
    for start in range(0, len(part), PART_CHUNK):
        piece = part[start : start + PART_CHUNK]
        yield piece.encode() if isinstance(piece, str) else piece


def around(content: Any, part: str | bytes) -> Iterator[bytes]:
    """``content``'s JSON with ``part`` in its ``SLOT``, in chunks."""
    head, tail = envelope(content)
    yield head
    yield from part_chunks(part)
    yield tail

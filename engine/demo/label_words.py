"""The words labels are made of (labels.py): how tokens compare and show, the token classes a
label may name, and the word lists behind them (stopwords, place names)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

_STOPWORDS = """
    a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those i you he she we they me him her us them my your his our their
    not no so do does did done have has had will would can could should may might must shall
    there here what which who whom whose when where why how all any some one just than then
    too very s t d ll m re ve o about into out up down over under again more most such only own
    same other also like get got go going said say says"""
STOPWORDS = frozenset(_STOPWORDS.split())
# Place names a fortunes corpus and a chat about the world meet: continents, countries,
# capitals, large cities, US states, seas.
_PLACES = """africa america asia europe australia antarctica arctic atlantic pacific mediterranean
    england britain scotland ireland wales france germany italy spain portugal greece russia
    china japan india korea canada mexico brazil egypt israel iran iraq turkey poland sweden
    norway denmark finland holland netherlands belgium switzerland austria hungary texas
    california york jersey florida ohio virginia georgia carolina washington oregon nevada
    utah arizona colorado kansas iowa alaska hawaii boston chicago london paris berlin rome
    madrid moscow tokyo beijing delhi cairo vienna prague athens dublin edinburgh oxford
    cambridge manchester liverpool hollywood brooklyn manhattan jerusalem venice naples
    vatican siberia sahara nile thames mississippi amazon"""
PLACES = frozenset(_PLACES.split())


def token_key(text: str) -> str:
    """How labels compare tokens: case and surrounding spaces ignored."""
    stripped = text.strip().lower()
    return stripped if stripped else text


def same_word(key: str, name: str) -> bool:
    """Whether a token (its key) is one of the words a label names: the same key, or another
    form of it (one a prefix of the other, at least 3 letters: "ask" names "asked")."""
    if key == name:
        return True
    short, long = sorted((key, name), key=len)
    return len(short) >= 3 and short.isalpha() and long.startswith(short)


def token_display(text: str) -> str:
    stripped = text.strip()
    if stripped:
        return stripped
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(text[:1], repr(text))


def _is_punct(s: str) -> bool:
    return bool(s) and all(unicodedata.category(c).startswith(("P", "S")) for c in s)


# Token classes, most specific first: (words, test on the stripped token).
CLASSES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "numbers",
        lambda s: (
            bool(s) and any(c.isdigit() for c in s) and all(c.isdigit() or c in ",." for c in s)
        ),
    ),
    ("punctuation", _is_punct),
    ("initials", lambda s: len(s) == 1 and s.isupper()),
    ("place names", lambda s: s.lower() in PLACES),
    ("ALL-CAPS words", lambda s: len(s) >= 2 and s.isalpha() and s.isupper()),
    (
        "names and title-case words",
        lambda s: len(s) >= 2 and s[0].isupper() and s[1:].islower() and s.isalpha(),
    ),
)

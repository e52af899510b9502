"""Label search finds a British spelling's American form too (the demo's labels are its
corpus's words: "color", while a British visitor types "colour"), and the query stays plain
tsquery text."""

from __future__ import annotations

import pytest

from backend.features.search import prefix_query, spellings


def test_spellings():
    assert spellings("colour") == ["colour", "color"]
    assert spellings("centre") == ["centre", "center"]
    assert spellings("organised") == ["organised", "organized"]
    assert spellings("sea") == ["sea"] and spellings("our") == ["our"]


@pytest.mark.parametrize(
    ("q", "label", "found"),
    [
        ("colour", "color / blue", True),
        ("COLOUR blu", "color / blue", True),
        ("color", "colour of the sea", False),  # one way: the corpus spells it "color"
        ("colour", "collar / blue", False),
        ("centre", "center / middle", True),
        ("sea", "seaf / seag", True),
        ("sea", "the ocean", False),
    ],
)
async def test_the_query_matches_in_postgres(db, q, label, found):
    query = prefix_query(q)
    matched = await db.fetchval(
        "SELECT to_tsvector('simple', $1) @@ to_tsquery('simple', $2)", label, query
    )
    assert matched is found, query

"""Label search on the committed demo SAE finds a feature by a word of its label or of its
examples' contexts (migration 0022: ``feature_labels.context_words``): "capital", "France",
"colour", "sea" and "number" each find a relevant feature among the first 20 results (the
API's default page). Relevant: the word itself (either spelling, or its plural) is a word of
the feature's label or of its examples' windows; a prefix match alone ("sea" in "search") is
not. The rows are stored as the catalog stores the SAE service's answer (engine/sae/serving.py
``labels``: labels.json, and the examples file's words for labelled features)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from backend.db import feature_reads, sae_catalog
from backend.features.catalog import HIST_EDGES, clean_words, label_rows
from backend.features.search import prefix_query, spellings
from engine.demo.train_sae import COMMITTED_SAE_DIR
from engine.sae.sidecars import (
    EXAMPLES_FILENAME,
    LABELS_FILENAME,
    read_context_words,
    read_labels,
)

QUERIES = ["capital", "France", "colour", "sea", "number"]


def relevant(query: str, text: str) -> bool:
    words = set(re.findall(r"\w+", text.lower()))
    return any(form in words or form + "s" in words for form in spellings(query.lower()))


@pytest.fixture
async def demo_sae(db) -> int:
    row = await sae_catalog.upsert_listed_sae(
        db, "demo-contexts", 15, d_sae=2048, has_labels=True, has_examples=True,
        model_id=None, listed_at=datetime.now(UTC), edges=HIST_EDGES,
    )  # fmt: skip
    labels = read_labels(COMMITTED_SAE_DIR / LABELS_FILENAME)
    words = read_context_words(COMMITTED_SAE_DIR / EXAMPLES_FILENAME)
    ids, texts = label_rows(labels, 2048)
    await sae_catalog.replace_labels(
        db, row["sae_key"], ids, texts, "sae_service", [clean_words(words.get(f, "")) for f in ids]
    )
    return row["sae_key"]


@pytest.mark.parametrize("query", QUERIES)
async def test_a_word_of_the_contexts_finds_a_relevant_feature(db, demo_sae, query):
    tsquery = prefix_query(query)
    assert tsquery is not None
    rows = await feature_reads.search_unfired_labels(db, tsquery, "demo-contexts", 15, 20)
    assert rows, query
    stored = {
        r["feature_id"]: f"{r['label']} {r['context_words']}"
        for r in await db.fetch(
            "SELECT feature_id, label, context_words FROM feature_labels WHERE sae_key = $1",
            demo_sae,
        )
    }
    found = [r["feature_id"] for r in rows if relevant(query, stored[r["feature_id"]])]
    assert found, (query, [(r["feature_id"], r["label"]) for r in rows])


async def test_label_matches_come_first(db, demo_sae):
    rows = await feature_reads.search_unfired_labels(db, prefix_query("colour"), None, None, 3)
    assert rows[0]["label"].startswith("color / blue")


async def test_labels_alone_miss_what_the_contexts_find(db, demo_sae):
    """Why the context words: three of the five words are in no label of the demo SAE."""
    labels = [r["label"] for r in await db.fetch(
        "SELECT label FROM feature_labels WHERE sae_key = $1", demo_sae
    )]  # fmt: skip
    missing = [q for q in QUERIES if not any(relevant(q, label) for label in labels)]
    assert set(missing) >= {"capital", "France"}

"""Label search over the Postgres label cache: prefix words (``wak`` finds "wake / awaken"),
all of them required, in a feature's label or in the words of its examples' contexts (migration
0022: "capital" finds a feature whose examples mention a capital); a number also finds that
feature id. Most-fired features first; among the never-fired, label matches first."""

from __future__ import annotations

import re

import asyncpg

from backend.db import feature_reads
from backend.db.pool import connection
from backend.features import pending as pending_mod
from backend.features.results import SearchResultView, SearchView
from backend.settings import Settings

MAX_TERMS = 8
MAX_TERM_CHARS = 64
_WORD = re.compile(r"\w+")


# British spellings and their American forms (the labels are the corpus's words, American in
# the demo's): a British spelling finds both. Endings only: "colour" -> "color", "centre" ->
# "center", "organise" -> "organize".
_SPELLINGS = ((re.compile(r"(\w{2,})our$"), r"\1or"), (re.compile(r"(\w{3,})re$"), r"\1er"),
              (re.compile(r"(\w{3,})is(e|ed|ing)$"), r"\1iz\2"))  # fmt: skip


def spellings(term: str) -> list[str]:
    """``term`` and its other spelling, if it has one."""
    forms = [term]
    for pattern, replacement in _SPELLINGS:
        other = pattern.sub(replacement, term)
        if other != term:
            forms.append(other)
    return forms


def prefix_query(q: str) -> str | None:
    """``to_tsquery('simple', ...)`` text: each word of ``q`` as a prefix (either spelling),
    all required. Only word characters reach the query, so no input can be tsquery syntax."""
    terms = [t[:MAX_TERM_CHARS] for t in _WORD.findall(q.lower())][:MAX_TERMS]
    parts = []
    for term in terms:
        forms = spellings(term)
        parts.append(" | ".join(f"{f}:*" for f in forms) if len(forms) == 1 else
                     "(" + " | ".join(f"{f}:*" for f in forms) + ")")  # fmt: skip
    return " & ".join(parts) or None


class LabelSearch:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._db_timeout = settings.playground_db_timeout_s

    async def search(self, q: str, sae_id: str | None, layer: int | None, limit: int) -> SearchView:
        tsquery = prefix_query(q)
        feature_id = int(q.strip()) if q.strip().isdigit() and len(q.strip()) <= 9 else None
        if tsquery is None and feature_id is None:
            return {"results": []}
        async with (
            connection(self.pool, self._db_timeout) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = []
            if feature_id is not None:
                rows += await feature_reads.features_by_id(conn, feature_id, sae_id, layer, limit)
            if tsquery is not None:
                rows += await feature_reads.search_fired_labels(conn, tsquery, sae_id, layer, limit)
                if len(rows) < limit:
                    rows += await feature_reads.search_unfired_labels(
                        conn, tsquery, sae_id, layer, limit - len(rows)
                    )
            both = sae_id is not None and layer is not None
            pending = await pending_mod.load(
                conn, sae_id if both else None, layer if both else None
            )
        results: list[SearchResultView] = []
        seen = set()
        for r in rows:
            key = (r["sae_id"], r["layer"], r["feature_id"])
            if key in seen:
                continue
            seen.add(key)
            delta = pending_mod.feature_delta(pending, *key)
            results.append(
                {
                    "sae_id": r["sae_id"],
                    "layer": r["layer"],
                    "feature_id": r["feature_id"],
                    "label": r["label"],
                    "runs_fired": r["runs_fired"] + delta.runs_fired,
                }
            )
        return {"results": results[:limit]}

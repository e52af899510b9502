"""The SQL of run comparison and export: both runs' timelines in one statement, a run with its
token texts for export, and labels straight from the label cache."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# The index row in full (``views.run_summary_view`` reads it) and what a timeline needs.
_TIMELINE_SELECT = """
SELECT i.*,
       p.request_id IS NOT NULL AS stored, p.sae_id IS NOT NULL AS collected,
       p.sae_id AS p_sae_id, p.sae_layer AS p_sae_layer, p.sae_top_k AS p_sae_top_k,
       cardinality(p.prompt_token_ids) AS output_start, p.timeline_packed, p.timeline_tokens
"""


async def runs_to_compare(
    conn: asyncpg.Connection, request_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """The runs among ``request_ids`` (one row each; unknown ids have none), each with its
    packed timeline (its JSON only when it has no packed copy) and token texts."""
    return await conn.fetch(
        _TIMELINE_SELECT
        + """,
       CASE WHEN p.timeline_packed IS NULL THEN p.feature_timeline::text END AS feature_timeline
FROM activation_run_index i
LEFT JOIN activation_run_previews p ON p.request_id = i.request_id
WHERE i.request_id = ANY($1::text[])
""",
        list(request_ids),
    )


async def run_to_export(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """Everything the run read answers (``run_reads.get_run``'s columns) and the token texts."""
    return await conn.fetchrow(
        _TIMELINE_SELECT
        + """,
       p.prompt, p.output_text, p.output_token_ids, p.prompt_token_ids,
       p.finish_reason AS p_finish_reason, p.feature_timeline::text AS feature_timeline
FROM activation_run_index i
LEFT JOIN activation_run_previews p ON p.request_id = i.request_id
WHERE i.request_id = $1
""",
        request_id,
    )


async def cached_labels(
    conn: asyncpg.Connection, sae_id: str, layer: int, feature_ids: Sequence[int]
) -> list[asyncpg.Record]:
    """(feature_id, label) of those features that the cache has a label for (no SAE lookup)."""
    return await conn.fetch(
        """
SELECT l.feature_id, l.label
FROM feature_saes s
JOIN feature_labels l ON l.sae_key = s.sae_key AND l.feature_id = ANY($3::int[])
WHERE s.sae_id = $1 AND s.layer = $2
""",
        sae_id,
        layer,
        list(feature_ids),
    )

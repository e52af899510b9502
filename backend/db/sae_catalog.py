"""SQL of the SAE catalog and its label cache (migration 0016)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg


async def upsert_listed_sae(
    conn: asyncpg.Connection,
    sae_id: str,
    layer: int,
    *,
    d_sae: int | None,
    has_labels: bool,
    has_examples: bool,
    model_id: str | None,
    listed_at: datetime,
    edges: Sequence[float],
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
INSERT INTO feature_saes (sae_id, layer, d_sae, has_labels, has_examples, model_id, listed_at,
                          hist_edges)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8[])
ON CONFLICT (sae_id, layer) DO UPDATE SET
  d_sae = coalesce(EXCLUDED.d_sae, feature_saes.d_sae), has_labels = EXCLUDED.has_labels,
  has_examples = EXCLUDED.has_examples, model_id = EXCLUDED.model_id,
  listed_at = EXCLUDED.listed_at
RETURNING *
""",
        sae_id,
        layer,
        d_sae,
        has_labels,
        has_examples,
        model_id,
        listed_at,
        list(edges),
    )


async def ensure_sae(
    conn: asyncpg.Connection, sae_id: str, layer: int, d_sae: int | None, edges: Sequence[float]
) -> asyncpg.Record:
    """The catalog row of an SAE named by hand (label import), created when missing."""
    return await conn.fetchrow(
        """
INSERT INTO feature_saes (sae_id, layer, d_sae, hist_edges) VALUES ($1, $2, $3, $4::float8[])
ON CONFLICT (sae_id, layer) DO UPDATE SET d_sae = coalesce(EXCLUDED.d_sae, feature_saes.d_sae)
RETURNING *
""",
        sae_id,
        layer,
        d_sae,
        list(edges),
    )


async def replace_labels(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_ids: Sequence[int],
    labels_: Sequence[str],
    source: str,
    words: Sequence[str] | None = None,
) -> None:
    """All of an SAE's labels at once (one transaction): delete, COPY, stamp the source.
    ``words``: per label, the words of the feature's examples, which label search also matches
    (migration 0022)."""
    context = words if words is not None else [""] * len(feature_ids)
    async with conn.transaction():
        await conn.execute("DELETE FROM feature_labels WHERE sae_key = $1", sae_key)
        await conn.copy_records_to_table(
            "feature_labels",
            records=[
                (sae_key, f, text, w)
                for f, text, w in zip(feature_ids, labels_, context, strict=True)
            ],
            columns=["sae_key", "feature_id", "label", "context_words"],
        )
        await conn.execute(
            "UPDATE feature_saes SET labels_source = $2, labels_loaded_at = now()"
            " WHERE sae_key = $1",
            sae_key,
            source,
        )

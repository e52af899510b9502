"""SQL of the feature explorer's reads (migration 0016): per-feature stats, histograms, top
runs, labels, searches and the pending queues the reads correct for."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def sae_by_id(conn: asyncpg.Connection, sae_id: str, layer: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM feature_saes WHERE sae_id = $1 AND layer = $2", sae_id, layer
    )


async def saes_by_key(conn: asyncpg.Connection, keys: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM feature_saes WHERE sae_key = ANY($1::int[])", list(keys))


async def feature_stats(
    conn: asyncpg.Connection, sae_key: int, feature_id: int
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM feature_stats WHERE sae_key = $1 AND feature_id = $2", sae_key, feature_id
    )


async def feature_hist(
    conn: asyncpg.Connection, sae_key: int, feature_id: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT bin, count FROM feature_hist WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def pending_runs(
    conn: asyncpg.Connection, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    """Queued (not yet folded) run versions of one SAE (all SAEs when ``sae_id`` is None)."""
    return await conn.fetch(
        """
SELECT a.request_id, a.version, a.sae_id, a.sae_layer, a.n_positions, a.data
FROM feature_pending_runs q
JOIN activation_run_features a ON a.request_id = q.request_id AND a.version = q.version
WHERE ($1::text IS NULL OR (a.sae_id = $1 AND a.sae_layer = $2))
LIMIT $3
""",
        sae_id,
        layer,
        limit,
    )


async def pending_removals(
    conn: asyncpg.Connection, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
SELECT r.request_id, r.version, r.sae_id, r.sae_layer, r.n_positions, r.data
FROM feature_pending_removals r
WHERE ($1::text IS NULL OR (r.sae_id = $1 AND r.sae_layer = $2))
  -- A version still queued was never folded (its fold rolled back): nothing to take back.
  AND NOT EXISTS (SELECT 1 FROM feature_pending_runs q
                  WHERE q.request_id = r.request_id AND q.version = r.version)
LIMIT $3
""",
        sae_id,
        layer,
        limit,
    )


async def top_runs(
    conn: asyncpg.Connection,
    sae_key: int,
    feature_id: int,
    limit: int,
    before: tuple[float, str] | None,
) -> list[asyncpg.Record]:
    """The leaderboard's current entries below ``before`` (max_act, request_id), best first.
    Entries of replaced or deleted runs (their removal still queued) are left out."""
    return await conn.fetch(
        """
SELECT t.request_id, t.version, t.max_act, t.max_position
FROM feature_top_runs t
JOIN activation_run_features a ON a.request_id = t.request_id AND a.version = t.version
WHERE t.sae_key = $1 AND t.feature_id = $2
  AND ($4::real IS NULL OR (t.max_act, t.request_id) < ($4, $5))
ORDER BY t.max_act DESC, t.request_id DESC, t.version DESC
LIMIT $3
""",
        sae_key,
        feature_id,
        limit,
        before[0] if before else None,
        before[1] if before else None,
    )


async def members_in_bin(
    conn: asyncpg.Connection,
    sae_key: int,
    key: int,
    limit: int,
    before: tuple[float, str] | None,
) -> list[asyncpg.Record]:
    """Folded current runs whose max for the feature falls in the bin of ``key`` (GIN), below
    ``before``, best first."""
    return await conn.fetch(
        """
SELECT m.request_id, m.version, m.max_acts[array_position(m.keys, $2)] AS max_act
FROM feature_run_members m
JOIN activation_run_features a ON a.request_id = m.request_id AND a.version = m.version
WHERE m.keys @> ARRAY[$2::int] AND m.sae_key = $1
  AND ($4::real IS NULL OR (m.max_acts[array_position(m.keys, $2)], m.request_id) < ($4, $5))
ORDER BY 3 DESC, m.request_id DESC
LIMIT $3
""",
        sae_key,
        key,
        limit,
        before[0] if before else None,
        before[1] if before else None,
    )


async def run_features(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Current aggregates of these runs (for positions of fallback rows)."""
    return await conn.fetch(
        "SELECT request_id, version, n_positions, data FROM activation_run_features "
        "WHERE request_id = ANY($1::text[])",
        list(run_ids),
    )


async def timelines(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """What the token windows need: packed timelines and token texts of these runs."""
    return await conn.fetch(
        """
SELECT p.request_id, i.created_at, i.prompt_preview, p.timeline_packed, p.timeline_tokens,
       CASE WHEN p.timeline_packed IS NULL THEN p.feature_timeline::text END AS feature_timeline
FROM activation_run_previews p JOIN activation_run_index i ON i.request_id = p.request_id
WHERE p.request_id = ANY($1::text[])
""",
        list(run_ids),
    )


async def label(conn: asyncpg.Connection, sae_key: int, feature_id: int) -> str | None:
    return await conn.fetchval(
        "SELECT label FROM feature_labels WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def labels(
    conn: asyncpg.Connection, sae_key: int, feature_ids: Sequence[int] | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
SELECT feature_id, label FROM feature_labels
WHERE sae_key = $1 AND ($2::int[] IS NULL OR feature_id = ANY($2))
ORDER BY feature_id
""",
        sae_key,
        list(feature_ids) if feature_ids is not None else None,
    )


async def cached_examples(conn: asyncpg.Connection, sae_key: int, feature_id: int) -> str | None:
    """The SAE's examples for this feature as JSON text, when cached."""
    return await conn.fetchval(
        "SELECT examples::text FROM feature_examples WHERE sae_key = $1 AND feature_id = $2",
        sae_key,
        feature_id,
    )


async def cache_examples(
    conn: asyncpg.Connection, sae_key: int, feature_id: int, examples_json: str
) -> None:
    await conn.execute(
        """
INSERT INTO feature_examples (sae_key, feature_id, examples) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (sae_key, feature_id) DO UPDATE SET examples = EXCLUDED.examples, fetched_at = now()
""",
        sae_key,
        feature_id,
        examples_json,
    )


async def search_fired_labels(
    conn: asyncpg.Connection,
    tsquery: str,
    sae_id: str | None,
    layer: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Fired features whose label or examples' words (``search``, migration 0022) match a
    ``to_tsquery('simple', ...)`` text, most-fired first. Postgres picks the plan: for a broad
    query it walks features by runs_fired and stops at ``limit`` matches; for a narrow one it
    takes the label index's matches and sorts."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, st.feature_id, l.label, st.runs_fired
FROM feature_stats st
JOIN feature_labels l ON l.sae_key = st.sae_key AND l.feature_id = st.feature_id
JOIN feature_saes s ON s.sae_key = st.sae_key
WHERE st.runs_fired > 0 AND l.search @@ to_tsquery('simple', $1)
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
ORDER BY st.runs_fired DESC, st.sae_key, st.feature_id
LIMIT $4
""",
        tsquery,
        sae_id,
        layer,
        limit,
    )


async def search_unfired_labels(
    conn: asyncpg.Connection,
    tsquery: str,
    sae_id: str | None,
    layer: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Matching labels of features that never fired in a folded run (after the fired ones):
    those whose label itself matches first, then those matched by their examples' words."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, l.feature_id, l.label, 0::bigint AS runs_fired
FROM feature_labels l
JOIN feature_saes s ON s.sae_key = l.sae_key
WHERE l.search @@ to_tsquery('simple', $1)
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
  AND NOT EXISTS (SELECT 1 FROM feature_stats st WHERE st.sae_key = l.sae_key
                  AND st.feature_id = l.feature_id AND st.runs_fired > 0)
ORDER BY to_tsvector('simple', l.label) @@ to_tsquery('simple', $1) DESC,
  s.sae_id, s.layer, l.feature_id
LIMIT $4
""",
        tsquery,
        sae_id,
        layer,
        limit,
    )


async def features_by_id(
    conn: asyncpg.Connection, feature_id: int, sae_id: str | None, layer: int | None, limit: int
) -> list[asyncpg.Record]:
    """This feature id in every cached SAE that has it (labelled or not), most-fired first."""
    return await conn.fetch(
        """
SELECT s.sae_id, s.layer, $1::int AS feature_id, l.label, coalesce(st.runs_fired, 0) AS runs_fired
FROM feature_saes s
LEFT JOIN feature_labels l ON l.sae_key = s.sae_key AND l.feature_id = $1
LEFT JOIN feature_stats st ON st.sae_key = s.sae_key AND st.feature_id = $1
WHERE s.d_sae > $1
  AND ($2::text IS NULL OR s.sae_id = $2)
  AND ($3::int IS NULL OR s.layer = $3)
ORDER BY runs_fired DESC, s.sae_id, s.layer
LIMIT $4
""",
        feature_id,
        sae_id,
        layer,
        limit,
    )


async def run_summaries(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Index rows of these runs (the listing's item columns)."""
    return await conn.fetch(
        """
SELECT request_id, created_at, updated_at, model_id, prompt_preview, status, error_code,
       error_message, error_upstream, prompt_tokens, output_tokens, finish_reason, sae_id,
       sae_layer, sae_top_k, has_preview, pruned_at, engine_ms, sae_ms, total_ms
FROM activation_run_index WHERE request_id = ANY($1::text[])
""",
        list(run_ids),
    )

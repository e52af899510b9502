"""The run rows and their writes (save_run, and the benchmark's bulk COPY), as named functions over
an asyncpg connection; the run reads are run_reads.py."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One row of activation_run_index (column order = field order)."""

    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt_preview: str
    status: str  # ok | failed | stopped
    error_code: str | None
    error_message: str | None
    error_upstream: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    has_preview: bool
    engine_ms: float | None
    sae_ms: float | None
    total_ms: float | None
    parse_special_tokens: bool = False
    trace_id: str | None = None  # the X-Request-ID of the request that made the run


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One row of activation_run_previews; ``feature_timeline`` is JSON text."""

    request_id: str
    created_at: datetime
    updated_at: datetime
    model_id: str
    prompt: str
    output_text: str
    output_token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None
    sae_id: str | None
    sae_layer: int | None
    sae_top_k: int | None
    feature_timeline: str
    timeline_packed: bytes | None
    timeline_tokens: list[str] | None


@dataclass(frozen=True, slots=True)
class FeaturesRow:
    """One row of activation_run_features: the run's per-feature aggregate
    (``backend/activations/aggregate.py``); ``version`` is assigned by the database."""

    request_id: str
    sae_id: str
    sae_layer: int
    n_positions: int
    data: bytes


INDEX_COLUMNS = [f.name for f in fields(IndexRow)]
PREVIEW_COLUMNS = [f.name for f in fields(PreviewRow)]
FEATURES_COLUMNS = [f.name for f in fields(FeaturesRow)]


def _assignments(columns: list[str]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "request_id")


def _placeholders(first: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(first, first + count))


_N_INDEX = len(INDEX_COLUMNS)


# One statement (one round trip, atomic): the index upsert feeds the preview write, so every
# writer locks the index row first; concurrent runs with one id serialise on it and the last
# to commit leaves a consistent pair. A re-run also clears an earlier prune mark. A failure
# never replaces a run that succeeded (its upsert skips an ``ok`` row, and so leaves its preview).
def _upsert_index_cte(guard: str = "") -> str:
    return f"""
WITH idx AS (
  INSERT INTO activation_run_index ({", ".join(INDEX_COLUMNS)})
  VALUES ({_placeholders(1, _N_INDEX)})
  ON CONFLICT (request_id) DO UPDATE SET {_assignments(INDEX_COLUMNS)}, pruned_at = NULL
  {guard}
  RETURNING request_id
)
"""


_N_PREVIEW = len(PREVIEW_COLUMNS) - 1
_UPSERT_PREVIEW_CTE = f"""
, prev AS (
  INSERT INTO activation_run_previews ({", ".join(PREVIEW_COLUMNS)})
  SELECT idx.request_id, {_placeholders(_N_INDEX + 1, _N_PREVIEW)} FROM idx
  ON CONFLICT (request_id) DO UPDATE SET {_assignments(PREVIEW_COLUMNS)}
  RETURNING request_id
)
"""
# The run's feature aggregate joins the same statement; a new version every write (the
# trigger of 0016 queues it for the fold, and queues the removal of a folded older one).
_FIRST_FEATURES = _N_INDEX + _N_PREVIEW + 1
# Never over a run that succeeded: what failures and stopped runs write (an ``ok`` row stays,
# and so does its preview: the guarded upsert returns no row for the next writes to follow).
_NOT_OVER_OK = "WHERE activation_run_index.status <> 'ok'"


def _save_with_features(guard: str = "") -> str:
    return (
        _upsert_index_cte(guard)
        + _UPSERT_PREVIEW_CTE
        + f"""
INSERT INTO activation_run_features ({", ".join(FEATURES_COLUMNS)})
SELECT prev.request_id, {_placeholders(_FIRST_FEATURES, len(FEATURES_COLUMNS) - 1)} FROM prev
ON CONFLICT (request_id) DO UPDATE SET {_assignments(FEATURES_COLUMNS)}, version = DEFAULT
"""
    )


def _save_without_features(guard: str = "") -> str:
    return (
        _upsert_index_cte(guard)
        + _UPSERT_PREVIEW_CTE
        + "DELETE FROM activation_run_features f USING prev WHERE f.request_id = prev.request_id"
    )


# By "does this write stand back for a run that succeeded" (a stopped run's does).
_SAVE_WITH_FEATURES = {False: _save_with_features(), True: _save_with_features(_NOT_OVER_OK)}
_SAVE_WITHOUT_FEATURES = {
    False: _save_without_features(),
    True: _save_without_features(_NOT_OVER_OK),
}
# A failed run keeps no preview (its features go with it: ON DELETE CASCADE), and is written
# only over nothing or an earlier failure, never over a run that succeeded.
_SAVE_FAILURE = (
    _upsert_index_cte(_NOT_OVER_OK)
    + "DELETE FROM activation_run_previews p USING idx WHERE p.request_id = idx.request_id"
)


async def save_run(
    conn: asyncpg.Connection,
    index: IndexRow,
    preview: PreviewRow | None,
    features: FeaturesRow | None = None,
) -> None:
    """Write a run's index row, its preview and its feature aggregate (or remove stale ones)
    in one statement; a failure (no preview) never replaces a run that succeeded."""
    await conn.execute(*save_statement(index, preview, features))


def save_statement(
    index: IndexRow, preview: PreviewRow | None, features: FeaturesRow | None = None
) -> tuple[str, ...]:
    """save_run's one statement and its arguments (also what bench.scale times under EXPLAIN)."""
    if preview is None:
        if features is not None:
            raise ValueError("a run without a preview has no feature aggregate")
        return (_SAVE_FAILURE, *astuple(index))
    if preview.request_id != index.request_id or (
        features is not None and features.request_id != index.request_id
    ):
        raise ValueError("a run's rows must share one request_id")
    guarded = index.status != "ok"
    if features is None:
        return (_SAVE_WITHOUT_FEATURES[guarded], *astuple(index), *astuple(preview)[1:])
    return (
        _SAVE_WITH_FEATURES[guarded],
        *astuple(index),
        *astuple(preview)[1:],
        *astuple(features)[1:],
    )


async def copy_runs(
    conn: asyncpg.Connection, index: list[IndexRow], previews: list[PreviewRow]
) -> None:
    """Bulk insert (benchmark seeding): COPY both tables in one transaction."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "activation_run_index", records=[astuple(r) for r in index], columns=INDEX_COLUMNS
        )
        await conn.copy_records_to_table(
            "activation_run_previews",
            records=[astuple(r) for r in previews],
            columns=PREVIEW_COLUMNS,
        )

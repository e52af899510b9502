"""A run record as database rows: the one place that maps a :class:`RunRecord` onto
``activation_run_index``, ``activation_run_previews`` and ``activation_run_features`` (the run
path, failure records and the benchmark seeder all build rows here)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.activations import aggregate, packed
from backend.activations.record import KEEPS_OUTPUT, RunRecord
from backend.db.queries import FeaturesRow, IndexRow, PreviewRow

PROMPT_PREVIEW_CHARS = 200
ERROR_MESSAGE_CHARS = 2000


def index_row(record: RunRecord) -> IndexRow:
    gen, ext, failure = record.generation, record.extraction, record.failure
    return IndexRow(
        request_id=record.request_id,
        created_at=record.created_at,
        updated_at=record.created_at,
        model_id=record.model_id,
        prompt_preview=record.prompt[:PROMPT_PREVIEW_CHARS],
        status=record.status,
        error_code=failure.code if failure else None,
        error_message=failure.message[:ERROR_MESSAGE_CHARS] if failure else None,
        error_upstream=failure.upstream if failure else None,
        prompt_tokens=len(gen.prompt_token_ids) if gen else None,
        output_tokens=len(gen.output_token_ids) if gen else None,
        finish_reason=gen.finish_reason if gen else None,
        sae_id=ext.sae_id if ext else None,
        sae_layer=ext.sae_layer if ext else None,
        sae_top_k=ext.sae_top_k if ext else None,
        has_preview=ext is not None,
        engine_ms=record.timings.engine,
        sae_ms=record.timings.sae,
        total_ms=record.timings.total,
        parse_special_tokens=record.parse_special_tokens,
        trace_id=record.trace_id,
    )


def preview_row(record: RunRecord) -> PreviewRow | None:
    """The preview of a successful or stopped run; it also keeps the output of runs without
    activations (read-back needs it), marked by ``sae_id IS NULL``. A failed run has none."""
    gen, ext = record.generation, record.extraction
    if record.status not in KEEPS_OUTPUT or gen is None:
        return None
    return PreviewRow(
        request_id=record.request_id,
        created_at=record.created_at,
        updated_at=record.created_at,
        model_id=record.model_id,
        prompt=record.prompt,
        output_text=gen.output_text,
        output_token_ids=gen.output_token_ids,
        prompt_token_ids=gen.prompt_token_ids,
        finish_reason=gen.finish_reason,
        sae_id=ext.sae_id if ext else None,
        sae_layer=ext.sae_layer if ext else None,
        sae_top_k=ext.sae_top_k if ext else None,
        feature_timeline=ext.timeline_json.decode() if ext else "[]",
        timeline_packed=packed.pack(ext.timeline) if ext else None,
        timeline_tokens=ext.tokens if ext else None,
    )


def features_row(record: RunRecord) -> FeaturesRow | None:
    """The per-feature aggregate of a successful (or stopped) run with activations."""
    ext = record.extraction
    if record.status not in KEEPS_OUTPUT or record.generation is None or ext is None:
        return None
    run = aggregate.from_timeline(ext.timeline)
    return FeaturesRow(
        request_id=record.request_id,
        sae_id=ext.sae_id,
        sae_layer=ext.sae_layer,
        n_positions=run.n_positions,
        data=aggregate.encode(run),
    )


@dataclass(frozen=True, slots=True)
class RunRows:
    index: IndexRow
    preview: PreviewRow | None
    features: FeaturesRow | None


def rows(record: RunRecord) -> RunRows:
    """Every row of a run, as ``queries.save_run`` takes them."""
    return RunRows(index_row(record), preview_row(record), features_row(record))


def stored_bytes(run_rows: RunRows) -> int:
    """What a run's rows hold, as counted against its client's daily quota: the preview's
    texts, token ids, timeline (JSON and packed) and the feature aggregate (index rows are
    small and fixed-size)."""
    preview, features = run_rows.preview, run_rows.features
    total = 0
    if preview is not None:
        total += len(preview.prompt.encode()) + len(preview.output_text.encode())
        total += 8 * (len(preview.output_token_ids) + len(preview.prompt_token_ids))
        total += len(preview.feature_timeline.encode()) + len(preview.timeline_packed or b"")
        total += sum(len(t.encode()) for t in preview.timeline_tokens or ())
    if features is not None:
        total += len(features.data)
    return total

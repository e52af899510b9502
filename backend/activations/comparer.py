"""Comparing two stored runs: load both timelines (one statement), check they are comparable,
derive the per-feature comparison and the token alignment, label from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import asyncpg

from backend.activations import alignment, compare, derive, packed, views
from backend.activations.export import csv_text
from backend.activations.reads import load_timeline
from backend.activations.results import RunSummaryView
from backend.db import compare_reads
from backend.db.pool import connection
from backend.settings import Settings
from common.errors import Gone, InvalidRequest, NotFound


@dataclass(frozen=True, slots=True)
class LoadedRun:
    row: asyncpg.Record
    timeline: packed.Timeline
    tokens: list[str]

    @property
    def sae(self) -> tuple[str, int]:
        return self.row["p_sae_id"], self.row["p_sae_layer"]


@dataclass(frozen=True, slots=True)
class CompareQuery:
    a: str
    b: str
    segment: derive.Segment = "all"
    include_special: bool = False
    limit: int | None = 50
    threshold: float = 1.0


def _loaded(rows: dict[str, asyncpg.Record], request_id: str) -> LoadedRun:
    row = rows.get(request_id)
    if row is None:
        raise NotFound(f"no run {request_id!r}")
    if row["status"] == "failed":
        raise NotFound(f"run {request_id!r} failed: it has no preview", code="no_preview")
    if row["pruned_at"] is not None or not row["stored"]:
        raise Gone(f"run {request_id!r}: its preview was pruned")
    if not row["collected"]:
        raise InvalidRequest(
            f"run {request_id!r} was stored without SAE features: nothing to compare",
            code="not_comparable",
        )
    timeline = load_timeline(row["timeline_packed"], row["feature_timeline"])
    tokens = row["timeline_tokens"] or [""] * timeline.n_positions
    return LoadedRun(row, timeline, list(tokens))


def _comparable(a: LoadedRun, b: LoadedRun, qa: str, qb: str) -> None:
    if a.sae != b.sae:
        raise InvalidRequest(
            f"runs {qa!r} ({a.sae[0]} layer {a.sae[1]}) and {qb!r} ({b.sae[0]} layer "
            f"{b.sae[1]}) were read with different SAEs or layers: not comparable",
            code="not_comparable",
        )


class CompareView(TypedDict):
    """The answer of /compare (mirrors ``compare_protocol.CompareResponse``)."""

    a: RunSummaryView
    b: RunSummaryView
    sae_id: str
    sae_layer: int
    segment: derive.Segment
    include_special: bool
    total_features: int
    features: list[dict[str, Any]]
    alignment: dict[str, Any]


class RunComparer:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._db_timeout = settings.playground_db_timeout_s

    async def _load(self, q: CompareQuery) -> tuple[LoadedRun, LoadedRun, compare.Comparison]:
        async with connection(self.pool, self._db_timeout) as conn:
            rows = await compare_reads.runs_to_compare(conn, [q.a, q.b])
        by_id = {r["request_id"]: r for r in rows}
        a, b = _loaded(by_id, q.a), _loaded(by_id, q.b)
        _comparable(a, b, q.a, q.b)
        comparison = compare.compare(
            a.timeline,
            b.timeline,
            segment=q.segment,
            include_special=q.include_special,
            limit=q.limit,
        )
        return a, b, comparison

    async def _labels(self, sae: tuple[str, int], feature_ids: list[int]) -> dict[int, str]:
        if not feature_ids:
            return {}
        async with connection(self.pool, self._db_timeout) as conn:
            rows = await compare_reads.cached_labels(conn, sae[0], sae[1], feature_ids)
        return {r["feature_id"]: r["label"] for r in rows}

    async def compare(self, q: CompareQuery) -> CompareView:
        a, b, comparison = await self._load(q)
        labels = await self._labels(a.sae, comparison.feature_ids.tolist())
        return {
            "a": views.run_summary_view(a.row),
            "b": views.run_summary_view(b.row),
            "sae_id": a.sae[0],
            "sae_layer": a.sae[1],
            "segment": q.segment,
            "include_special": q.include_special,
            "total_features": comparison.total,
            "features": compare.feature_items(comparison, labels),
            "alignment": _alignment(a, b, q),
        }

    async def export_csv(self, q: CompareQuery) -> Iterator[str]:
        """Every feature of the comparison as CSV lines (header first), in the answer's order."""
        a, _, comparison = await self._load(q)
        labels = await self._labels(a.sae, comparison.feature_ids.tolist())
        return compare_csv_lines(compare.feature_items(comparison, labels))


def _alignment(a: LoadedRun, b: LoadedRun, q: CompareQuery) -> dict[str, Any]:
    ops = alignment.align(a.timeline.token_ids, b.timeline.token_ids)
    pa, pb = alignment.aligned_pairs(ops.opcodes)
    keep_a = derive.position_mask(a.timeline, q.segment, q.include_special)
    keep_b = derive.position_mask(b.timeline, q.segment, q.include_special)
    kept = keep_a[pa] & keep_b[pb]
    changes = alignment.position_changes(a.timeline, b.timeline, pa[kept], pb[kept], q.threshold)
    return {
        "a_tokens": a.tokens,
        "b_tokens": b.tokens,
        "a_output_start": a.row["output_start"],
        "b_output_start": b.row["output_start"],
        "prefix": ops.prefix,
        "opcodes": ops.opcodes,
        "coarse": ops.coarse,
        "threshold": q.threshold,
        "positions": changes.positions,
        "truncated": changes.truncated,
    }


COMPARE_CSV_HEADER = (
    "feature_id,label,a_max,a_mean,a_hits,b_max,b_mean,b_hits,delta_max,delta_mean\n"
)


def compare_csv_lines(items: list[dict[str, Any]]) -> Iterator[str]:
    yield COMPARE_CSV_HEADER
    for item in items:
        a, b = item["a"], item["b"]
        label = csv_text(item["label"]) if item["label"] is not None else ""
        yield (
            f"{item['feature_id']},{label},{a['max']!r},{a['mean']!r},{a['hits']},"
            f"{b['max']!r},{b['mean']!r},{b['hits']},{item['delta_max']!r},"
            f"{item['delta_mean']!r}\n"
        )

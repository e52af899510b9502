"""Exporting a stored run (JSON or CSV) and a comparison (CSV): one read, then a generator of
chunks for the streamed answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import asyncpg

from backend.activations import export, packed, views
from backend.activations.comparer import CompareQuery, RunComparer
from backend.activations.reads import load_timeline
from backend.db import compare_reads
from backend.db.pool import connection
from backend.settings import Settings
from common.errors import Gone, NotFound

ExportFormat = Literal["json", "csv"]


@dataclass(frozen=True, slots=True)
class Download:
    chunks: Iterator[bytes]
    filename: str
    media_type: str


class RunExporter:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, comparer: RunComparer) -> None:
        self.pool = pool
        self.comparer = comparer
        self._db_timeout = settings.playground_db_timeout_s

    async def run(self, request_id: str, fmt: ExportFormat, public_base_url: str) -> Download:
        """404 unknown, 410 pruned; a failed run exports its record and no rows. CSV reads only
        the packed timeline; JSON also the stored JSON (the run read embeds it)."""
        async with connection(self.pool, self._db_timeout) as conn:
            if fmt == "csv":
                found = await compare_reads.runs_to_compare(conn, [request_id])
                row = found[0] if found else None
            else:
                row = await compare_reads.run_to_export(conn, request_id)
        if row is None:
            raise NotFound(f"no run {request_id!r}")
        failed = row["status"] == "failed"
        if not failed and (row["pruned_at"] is not None or not row["stored"]):
            raise Gone(f"run {request_id!r}: its preview was pruned")
        timeline: packed.Timeline | None = None
        tokens: list[str] = []
        if not failed and row["collected"]:
            timeline = load_timeline(row["timeline_packed"], row["feature_timeline"])
            tokens = list(row["timeline_tokens"] or [""] * timeline.n_positions)
        output_start = row["output_start"] or 0
        name = export.file_name(f"activations-{request_id}", fmt)
        if fmt == "csv":
            return Download(
                export.csv_chunks(timeline, tokens, output_start), name, export.CSV_MEDIA_TYPE
            )
        run_json: str | None = None
        if failed:
            run = views.failed_run_view(row, public_base_url)
        elif timeline is None:
            run = views.stored_run_view(row, None, public_base_url)
        else:  # the stored timeline JSON is written as fetched, not copied (json_parts.py)
            run = views.stored_run_view(row, timeline, public_base_url, slot=True)
            run_json = row["feature_timeline"]
        chunks = export.json_chunks(run, timeline, tokens, output_start, run_json)
        return Download(chunks, name, export.JSON_MEDIA_TYPE)

    async def comparison(self, q: CompareQuery) -> Download:
        lines = await self.comparer.export_csv(q)
        name = export.file_name(f"compare-{q.a}-vs-{q.b}", "csv")
        return Download(export.chunked(lines), name, export.CSV_MEDIA_TYPE)

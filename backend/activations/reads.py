"""Reading stored runs back: one run, its rows and top features, the listing, the summary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import orjson

from backend.activations import cursor as runs_cursor
from backend.activations import derive, json_parts, packed, results, views
from backend.activations.steering_views import with_pair
from backend.db import pairs, run_reads
from backend.db.pool import connection
from backend.settings import Settings
from common.errors import Gone, NotFound


@dataclass(frozen=True, slots=True)
class StoredTimeline:
    """What rows and top-features derive from; ``timeline`` is None for a run stored without
    activations."""

    timeline: packed.Timeline | None
    tokens: list[str] | None
    output_start: int


@dataclass(frozen=True, slots=True)
class RunRead:
    """One run read: its view and, for a run with a stored timeline, that timeline's JSON text
    as fetched, which the view does not embed (its place is ``json_parts.SLOT``): the answer is
    written around it in parts (``chunks``), the bytes ``OrjsonResponse`` would write."""

    view: results.RunView
    timeline_json: str | None = None

    def chunks(self) -> Iterator[bytes]:
        """The answer in parts (a run with a timeline only)."""
        assert self.timeline_json is not None
        return json_parts.around(self.view, self.timeline_json)


def load_timeline(packed_bytes: bytes | None, timeline_json: str | None) -> packed.Timeline:
    if packed_bytes is not None:
        return packed.unpack(packed_bytes)
    # Rows written without the packed copy: derive it from the JSON.
    timeline, _ = packed.from_entries(orjson.loads(timeline_json or "[]"))
    return timeline


class RunReader:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._db_timeout = settings.playground_db_timeout_s

    def _conn(self):
        return connection(self.pool, self._db_timeout)

    async def get_run(self, request_id: str, public_base_url: str) -> RunRead:
        """404 unknown, 410 pruned (raised before any answer starts)."""
        async with self._conn() as conn:
            row = await run_reads.get_run(conn, request_id)
            pair = await pairs.get_pair(conn, request_id) if row is not None else None
        if row is None:
            raise NotFound(f"no run {request_id!r}")
        if row["status"] == "failed" or (row["status"] == "stopped" and not row["stored"]):
            return RunRead(with_pair(views.failed_run_view(row, public_base_url), pair))
        if row["pruned_at"] is not None or not row["stored"]:
            raise Gone(f"run {request_id!r}: its preview was pruned")
        if row["p_sae_id"] is None:
            return RunRead(with_pair(views.stored_run_view(row, None, public_base_url), pair))
        timeline = load_timeline(row["timeline_packed"], row["feature_timeline"])
        view = views.stored_run_view(row, timeline, public_base_url, slot=True)
        return RunRead(with_pair(view, pair), row["feature_timeline"])

    async def _timeline(self, request_id: str, *, with_tokens: bool) -> StoredTimeline:
        async with self._conn() as conn:
            row = await run_reads.get_timeline(conn, request_id, with_tokens=with_tokens)
        if row is None:
            raise NotFound(f"no run {request_id!r}")
        if row["status"] == "failed" or (row["status"] == "stopped" and not row["stored"]):
            status = row["status"]
            raise NotFound(f"run {request_id!r} {status}: it has no preview", code="no_preview")
        if row["pruned_at"] is not None or not row["stored"]:
            raise Gone(f"run {request_id!r}: its preview was pruned")
        if not row["collected"]:
            return StoredTimeline(None, None, 0)
        return StoredTimeline(
            load_timeline(row["timeline_packed"], row["feature_timeline"]),
            row["timeline_tokens"],
            row["output_start"],
        )

    async def rows(self, request_id: str, flt: derive.RowFilter) -> results.RowsView:
        stored = await self._timeline(request_id, with_tokens=True)
        total, rows = (
            (0, [])
            if stored.timeline is None
            else derive.rows(stored.timeline, stored.tokens, stored.output_start, flt)
        )
        return views.rows_view(request_id, total, rows, flt)

    async def top_features(
        self, request_id: str, *, segment: derive.Segment, include_special: bool, limit: int
    ) -> results.TopFeaturesView:
        stored = await self._timeline(request_id, with_tokens=False)
        features = (
            []
            if stored.timeline is None
            else derive.top_features(
                stored.timeline, segment=segment, include_special=include_special, limit=limit
            )
        )
        return views.top_features_view(request_id, segment, include_special, features)

    async def list_runs(
        self, *, limit: int, cursor: str | None, status: str | None
    ) -> results.RunsPageView:
        after = runs_cursor.decode(cursor) if cursor else None
        async with self._conn() as conn:
            records = await run_reads.list_runs(
                conn,
                limit=limit + 1,
                before_created_at=after.created_at if after else None,
                before_request_id=after.request_id if after else None,
                status=status,
            )
        page = records[:limit]
        next_cursor = None
        if len(records) > limit:
            last = page[-1]
            next_cursor = runs_cursor.encode(
                runs_cursor.RunsCursor(last["created_at"], last["request_id"])
            )
        return {"runs": [views.run_summary_view(r) for r in page], "next_cursor": next_cursor}

    async def summary(self) -> results.SummaryView:
        async with self._conn() as conn, conn.transaction(readonly=True):
            counts = await run_reads.summary(conn)
            models = await run_reads.runs_per_model(conn)
        return views.summary_view(counts, models)

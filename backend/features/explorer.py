"""The feature explorer's reads: one feature's page, and the runs it fired in ordered by its max.

Every read runs in one REPEATABLE READ snapshot: the folded indexes (``fold.py``) plus what is
still queued (``pending.py``), so the numbers are those of every stored run at that moment.
Labels and examples come from the Postgres cache (``catalog.py``); examples are fetched from
the SAE service (a file read there, no GPU) once per feature and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import asyncpg
import numpy as np
import orjson

from backend.activations import cursor as runs_cursor
from backend.activations import views as run_views
from backend.activations.aggregate import N_BINS
from backend.activations.reads import load_timeline
from backend.db import feature_reads
from backend.db.pool import connection
from backend.features import links, members
from backend.features import pending as pending_mod
from backend.features.catalog import SaeCatalog, SaeEntry
from backend.features.results import (
    FeatureRunsPageView,
    FeatureRunSummaryView,
    FeatureView,
    TopRunView,
    WindowView,
)
from backend.settings import Settings
from backend.upstreams.sae import SaeClient
from common.errors import ApiError, InvalidRequest, NotFound

logger = logging.getLogger(__name__)

WINDOW_RADIUS = 8
MAX_EXAMPLES = 20


@dataclass(frozen=True, slots=True)
class Ranked:
    """A run's standing for one feature; ``max_pos`` None until looked up."""

    request_id: str
    version: int
    max_act: float
    max_pos: int | None


def window(timeline, tokens: list[str] | None, feature_id: int, center: int) -> list[WindowView]:
    """Tokens around ``center`` with the feature's activation where it is in the top-k."""
    lo, hi = max(0, center - WINDOW_RADIUS), min(timeline.n_positions, center + WINDOW_RADIUS + 1)
    out: list[WindowView] = []
    for p in range(lo, hi):
        a, b = int(timeline.offsets[p]), int(timeline.offsets[p + 1])
        hit = np.flatnonzero(timeline.feature_ids[a:b] == feature_id)
        out.append(
            {
                "position": p,
                "token": tokens[p] if tokens is not None and p < len(tokens) else None,
                "activation": float(timeline.activations[a + hit[0]]) if hit.size else None,
            }
        )
    return out


class FeatureExplorer:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, catalog: SaeCatalog, sae: SaeClient
    ) -> None:
        self.pool = pool
        self.catalog = catalog
        self.sae = sae
        self._db_timeout = settings.playground_db_timeout_s

    def _conn(self):
        return connection(self.pool, self._db_timeout)

    async def resolve(self, sae_id: str, layer: int, feature_id: int) -> SaeEntry:
        """404 unknown SAE; 422 ``feature_out_of_range`` when ``feature_id >= d_sae``."""
        entry = await self.catalog.resolve(sae_id, layer)
        if feature_id >= entry.d_sae:
            raise InvalidRequest(
                f"feature_id: {feature_id} is not below d_sae {entry.d_sae} of {sae_id!r}",
                code="feature_out_of_range",
            )
        return entry

    async def ranked(
        self,
        conn: asyncpg.Connection,
        entry: SaeEntry,
        feature_id: int,
        limit: int,
        before: tuple[float, str] | None,
        pending: pending_mod.Pending,
    ) -> list[Ranked]:
        """The feature's runs below ``before``, best first: the leaderboard, the member rows
        under its floor when it runs short, and queued runs."""
        board = await feature_reads.top_runs(conn, entry.sae_key, feature_id, limit, before)
        found = [
            Ranked(r["request_id"], r["version"], r["max_act"], r["max_position"]) for r in board
        ]
        stats = await feature_reads.feature_stats(conn, entry.sae_key, feature_id)
        if stats is not None and stats["top_full"] and len(found) < limit:
            floor = (stats["floor_act"], stats["floor_request_id"])
            bound = floor if before is None or before > floor else before
            more = await members.runs_below(
                conn, entry.sae_key, feature_id, bound, limit - len(found)
            )
            found += [Ranked(m.request_id, m.version, m.max_act, None) for m in more]
        for c in pending_mod.candidates(pending, entry.sae_id, entry.layer, feature_id):
            if before is None or (c.max_act, c.request_id) < before:
                found.append(Ranked(c.request_id, c.version, c.max_act, c.max_pos))
        found.sort(key=lambda r: (r.max_act, r.request_id), reverse=True)
        return found[:limit]

    async def feature(self, sae_id: str, layer: int, feature_id: int, top: int) -> FeatureView:
        entry = await self.resolve(sae_id, layer, feature_id)
        async with (
            self._conn() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            sae_row = await feature_reads.sae_by_id(conn, sae_id, layer)
            stats = await feature_reads.feature_stats(conn, entry.sae_key, feature_id)
            hist_rows = await feature_reads.feature_hist(conn, entry.sae_key, feature_id)
            pending = await pending_mod.load(conn, sae_id, layer)
            best = await self.ranked(conn, entry, feature_id, top, None, pending)
            missing = [r.request_id for r in best if r.max_pos is None]
            if missing:
                where = await members.positions_of(conn, missing, feature_id)
                best = [
                    replace(r, max_pos=where.get(r.request_id, 0)) if r.max_pos is None else r
                    for r in best
                ]
            stored = {
                t["request_id"]: t
                for t in await feature_reads.timelines(conn, [r.request_id for r in best])
            }
            label = await feature_reads.label(conn, entry.sae_key, feature_id)
            examples_json = await feature_reads.cached_examples(conn, entry.sae_key, feature_id)
        if examples_json is None and entry.has_examples:
            examples_json, fetched_label = await self._fetch_examples(entry, feature_id)
            label = label or fetched_label

        if sae_row is None:  # resolve() found it; only a concurrent delete of the SAE row
            raise NotFound(f"unknown SAE {sae_id!r} at layer {layer}", code="sae_not_found")
        delta = pending_mod.feature_delta(pending, sae_id, layer, feature_id)
        counts: np.ndarray = np.zeros(N_BINS, dtype=np.int64)
        for r in hist_rows:
            counts[r["bin"]] += r["count"]
        counts += delta.hist
        return {
            "sae_id": sae_id,
            "layer": layer,
            "feature_id": feature_id,
            "d_sae": entry.d_sae,
            "label": label,
            "density": {
                "runs_fired": (stats["runs_fired"] if stats else 0) + delta.runs_fired,
                "runs_total": sae_row["runs_total"] + delta.runs_total,
                "positions_fired": int(counts.sum()),
                "positions_total": sae_row["positions_total"] + delta.positions_total,
            },
            "histogram": {"edges": list(sae_row["hist_edges"]), "counts": counts.tolist()},
            "top_runs": [self._top_run(r, stored.get(r.request_id), feature_id) for r in best],
            "examples": orjson.Fragment(examples_json or "[]"),
            "links": {
                "runs": links.runs_listing(sae_id, layer, feature_id),
                "page": links.page(sae_id, layer, feature_id),
                "neuronpedia": links.neuronpedia(sae_id, layer, entry.d_sae, feature_id),
            },
            "complete": pending.complete,
        }

    @staticmethod
    def _top_run(r: Ranked, stored: asyncpg.Record | None, feature_id: int) -> TopRunView:
        max_pos = r.max_pos or 0
        win: list[WindowView] = []
        if stored is not None and (
            stored["timeline_packed"] is not None or stored["feature_timeline"] is not None
        ):
            timeline = load_timeline(stored["timeline_packed"], stored["feature_timeline"])
            win = window(timeline, stored["timeline_tokens"], feature_id, max_pos)
        return {
            "request_id": r.request_id,
            "created_at": stored["created_at"] if stored else None,
            "prompt_preview": (stored["prompt_preview"] if stored else "") or "",
            "max_activation": r.max_act,
            "max_position": max_pos,
            "window": win,
        }

    async def _fetch_examples(
        self, entry: SaeEntry, feature_id: int
    ) -> tuple[str | None, str | None]:
        """The SAE service's examples for one feature, cached; (None, None) when it fails."""
        try:
            info = await self.sae.feature(entry.sae_id, entry.layer, feature_id)
        except ApiError as exc:
            logger.info(
                "examples of %s/%s/%s unavailable: %s",
                entry.sae_id,
                entry.layer,
                feature_id,
                exc.message,
            )
            return None, None
        if info is None:
            return None, None
        examples_json = orjson.dumps(info.examples[:MAX_EXAMPLES]).decode()
        async with self._conn() as conn:
            await feature_reads.cache_examples(conn, entry.sae_key, feature_id, examples_json)
        return examples_json, info.label

    async def runs(
        self, sae_id: str, layer: int, feature_id: int, limit: int, cursor: str | None
    ) -> FeatureRunsPageView:
        """The runs the feature fired in, by its max activation desc (request_id desc on ties)."""
        entry = await self.resolve(sae_id, layer, feature_id)
        after = runs_cursor.decode_feature(cursor) if cursor else None
        before = (after.max_act, after.request_id) if after else None
        async with (
            self._conn() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            pending = await pending_mod.load(conn, sae_id, layer)
            found = await self.ranked(conn, entry, feature_id, limit + 1, before, pending)
            rows = await feature_reads.run_summaries(conn, [r.request_id for r in found[:limit]])
        by_id = {r["request_id"]: r for r in rows}
        page = found[:limit]
        items = [
            FeatureRunSummaryView(
                **run_views.run_summary_view(by_id[r.request_id]), feature_max_activation=r.max_act
            )
            for r in page
            if r.request_id in by_id
        ]
        next_cursor = None
        if len(found) > limit:
            last = page[-1]
            next_cursor = runs_cursor.encode_feature(
                runs_cursor.FeatureRunsCursor(last.max_act, last.request_id)
            )
        return {"runs": items, "next_cursor": next_cursor}

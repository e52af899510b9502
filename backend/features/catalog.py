"""The SAE catalog and label cache in Postgres (``feature_saes``, ``feature_labels``).

Filled from the SAE service: its ``GET /saes`` (d_sae, has_labels, has_examples) and, for an SAE
with labels, its bulk ``GET /saes/{sae_id}/{layer}/labels`` (one request per SAE). Pages read
only Postgres; the service is asked again when an SAE is unknown or its row is older than
``LISTING_TTL_S`` (at most once per ``RETRY_S`` per process, answered or not); an SAE the
last listing lacked is not asked about for ``UNKNOWN_RECHECK_S``. Labels loaded
by ``playground import-labels`` (``labels_source = 'import'``) are never replaced by the
service's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from backend.activations.aggregate import HIST_EDGES
from backend.db import feature_reads, sae_catalog
from backend.db.pool import connection
from backend.features.results import LabelsView
from backend.settings import Settings
from backend.upstreams.sae import SaeClient, SaeLabels
from common.errors import ApiError, NotFound

logger = logging.getLogger(__name__)

LISTING_TTL_S = 600.0
SERVICE_LABELS_TTL = timedelta(hours=1)
RETRY_S = 30.0
# An SAE the service's last listing did not have is not asked about again for this long
# (per process): longer than the GPU apps' 900 s scale-down, so requests for unknown SAEs
# never keep an SAE container awake.
UNKNOWN_RECHECK_S = 1200.0
MAX_LABEL_CHARS = 500
MAX_WORDS_CHARS = 4000  # a feature's context words (searched, never shown)
# A run's "is this SAE known" is remembered this long per process once answered yes: it is on
# every run's way to its first token, and an SAE, once listed, stays in the cache.
KNOWN_MEMO_S = 30.0
KNOWN_MEMO_MAX = 1024


@dataclass(frozen=True, slots=True)
class SaeEntry:
    sae_key: int
    sae_id: str
    layer: int
    d_sae: int
    has_labels: bool
    has_examples: bool
    hist_edges: list[float]
    runs_total: int
    positions_total: int


def _entry(row: asyncpg.Record) -> SaeEntry:
    return SaeEntry(
        sae_key=row["sae_key"],
        sae_id=row["sae_id"],
        layer=row["layer"],
        d_sae=row["d_sae"],
        has_labels=row["has_labels"] or row["labels_source"] is not None,
        has_examples=row["has_examples"],
        hist_edges=list(row["hist_edges"]),
        runs_total=row["runs_total"],
        positions_total=row["positions_total"],
    )


def clean_label(text: str) -> str:
    """Storable and bounded: no NUL, at most MAX_LABEL_CHARS, surrounding space trimmed."""
    return text.replace("\x00", "\ufffd").strip()[:MAX_LABEL_CHARS]


def clean_words(text: str) -> str:
    """A feature's context words as stored for search: no NUL, at most MAX_WORDS_CHARS."""
    return text.replace("\x00", " ")[:MAX_WORDS_CHARS]


def label_rows(labels: dict[int, str], d_sae: int | None) -> tuple[list[int], list[str]]:
    """Valid (id, label) pairs, ascending: ids in [0, d_sae), non-empty labels."""
    ids, texts = [], []
    for fid in sorted(labels):
        text = clean_label(labels[fid])
        if fid >= 0 and (d_sae is None or fid < d_sae) and text:
            ids.append(fid)
            texts.append(text)
    return ids, texts


class SaeCatalog:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, sae: SaeClient) -> None:
        self.pool = pool
        self.sae = sae
        self._db_timeout = settings.playground_db_timeout_s
        self._lock = asyncio.Lock()
        self._last_attempt = float("-inf")
        self._last_listing = float("-inf")  # the last listing the service answered
        self._known: dict[tuple[str, int], float] = {}  # (sae_id, layer) -> when resolved

    def _conn(self):
        return connection(self.pool, self._db_timeout)

    async def resolve(self, sae_id: str, layer: int) -> SaeEntry:
        """The SAE's cached metadata; 404 ``sae_not_found`` when neither the cache nor the SAE
        service knows its d_sae."""
        async with self._conn() as conn:
            row = await feature_reads.sae_by_id(conn, sae_id, layer)
        if self._needs_refresh(row) and not self._known_unknown(row):
            try:
                await self.refresh()
            except ApiError as exc:
                if row is None or row["d_sae"] is None:
                    raise
                logger.info("SAE catalog refresh failed, using the cache: %s", exc.message)
            async with self._conn() as conn:
                row = await feature_reads.sae_by_id(conn, sae_id, layer)
        if row is None or row["d_sae"] is None:
            raise NotFound(
                f"unknown SAE {sae_id!r} at layer {layer}: the SAE service does not list it",
                code="sae_not_found",
            )
        return _entry(row)

    async def check_known(self, sae_id: str, layer: int) -> None:
        """``resolve``'s 404 for an SAE nobody serves, or nothing; a yes is remembered for
        ``KNOWN_MEMO_S`` (no database round trip for the runs meanwhile)."""
        key = (sae_id, layer)
        resolved_at = self._known.get(key)
        if resolved_at is not None and time.monotonic() - resolved_at < KNOWN_MEMO_S:
            return
        await self.resolve(sae_id, layer)
        if len(self._known) >= KNOWN_MEMO_MAX:  # bounded: ids come from strangers
            self._known.clear()
        self._known[key] = time.monotonic()

    def _known_unknown(self, row: asyncpg.Record | None) -> bool:
        """Not in the cache, and the service's listing, recent enough, did not have it."""
        unknown = row is None or row["d_sae"] is None
        return unknown and time.monotonic() - self._last_listing < UNKNOWN_RECHECK_S

    @staticmethod
    def _needs_refresh(row: asyncpg.Record | None) -> bool:
        """Unknown, no d_sae, labels the service has but the cache lacks, or listed long ago.
        (A refresh in progress is waited for; a recent attempt is not repeated.)"""
        if row is None or row["d_sae"] is None:
            return True
        if row["has_labels"] and row["labels_source"] is None:
            return True
        listed = row["listed_at"]
        return listed is not None and (datetime.now(UTC) - listed).total_seconds() > LISTING_TTL_S

    async def refresh(self, *, force: bool = False) -> None:
        """Ask the SAE service what it serves; load labels it has that the cache lacks."""
        async with self._lock:
            if not force and time.monotonic() - self._last_attempt < RETRY_S:
                return
            self._last_attempt = time.monotonic()
            listing = await self.sae.list_saes()
            self._last_listing = time.monotonic()
            now = datetime.now(UTC)
            to_label = []
            async with self._conn() as conn:
                for info in listing.saes:
                    for layer in info.layers:
                        row = await sae_catalog.upsert_listed_sae(
                            conn,
                            info.sae_id,
                            layer,
                            d_sae=info.d_sae,
                            has_labels=info.has_labels,
                            has_examples=info.has_examples,
                            model_id=info.model_id,
                            listed_at=now,
                            edges=HIST_EDGES,
                        )
                        if row["has_labels"] and self._wants_service_labels(row, now):
                            to_label.append(row)
            for row in to_label:
                await self._load_service_labels(row)

    async def warm(self) -> None:
        """At start-up: fill the cache from the SAE service if it answers (it may start later)."""
        try:
            await self.refresh(force=True)
        except Exception as exc:  # a background task: log, never raise
            logger.info("SAE catalog not filled at start-up: %s: %s", type(exc).__name__, exc)

    @staticmethod
    def _wants_service_labels(row: asyncpg.Record, now: datetime) -> bool:
        if row["labels_source"] == "import":
            return False
        loaded = row["labels_loaded_at"]
        return loaded is None or now - loaded > SERVICE_LABELS_TTL

    async def _load_service_labels(self, row: asyncpg.Record) -> None:
        answer: SaeLabels | None = await self.sae.labels(row["sae_id"], row["layer"])
        if answer is None:
            return
        ids, texts = label_rows(answer.labels, row["d_sae"])
        words = [clean_words(answer.words.get(f, "")) for f in ids]
        async with self._conn() as conn:
            await sae_catalog.replace_labels(conn, row["sae_key"], ids, texts, "sae_service", words)

    async def labels(
        self, sae_id: str, layer: int, feature_ids: list[int] | None
    ) -> tuple[SaeEntry, dict[int, str]]:
        entry = await self.resolve(sae_id, layer)
        async with self._conn() as conn:
            rows = await feature_reads.labels(conn, entry.sae_key, feature_ids)
        return entry, {r["feature_id"]: r["label"] for r in rows}

    async def labels_view(
        self, sae_id: str, layer: int, feature_ids: list[int] | None
    ) -> LabelsView:
        entry, found = await self.labels(sae_id, layer, feature_ids)
        return {
            "sae_id": sae_id,
            "layer": layer,
            "d_sae": entry.d_sae,
            "labels": {str(fid): text for fid, text in found.items()},
        }


async def import_labels(
    conn: asyncpg.Connection,
    sae_id: str,
    layer: int,
    labels: dict[int, str],
    d_sae: int | None,
) -> int:
    """``playground import-labels``: replace an SAE's labels with a file's; answers how many."""
    row = await sae_catalog.ensure_sae(conn, sae_id, layer, d_sae, HIST_EDGES)
    ids, texts = label_rows(labels, row["d_sae"])
    await sae_catalog.replace_labels(conn, row["sae_key"], ids, texts, "import")
    return len(ids)

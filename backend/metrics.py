"""The backend's own metrics and its one log line per run (docs/operations.md lists them).

Made by the app factory on the app's registry; the services that observe get it from the
lifespan. Gauges of shared state (the DB pool, the feature-fold queue) are refreshed when
``/metrics`` is scraped, not on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from backend.db import fold_sql

# Its INFO lines are what `playground up` shows at the terminal (playground/run_lines.py).
run_logger = logging.getLogger("backend.runs")
logger = logging.getLogger(__name__)

# Milliseconds to a few minutes: a run is engine + SAE + one write.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
STAGES = ("engine", "sae", "db", "total")
_TOKEN_FRAME = b"event: token\n"


class _Timings(Protocol):
    @property
    def engine(self) -> float | None: ...

    @property
    def sae(self) -> float | None: ...

    @property
    def total(self) -> float | None: ...


class _Failure(Protocol):
    @property
    def code(self) -> str: ...


class StoredRun(Protocol):
    """What the metrics read of a stored run (backend/activations/record.py's RunRecord; this
    module sits below activations/, so it names the shape, not the class)."""

    @property
    def request_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def timings(self) -> _Timings: ...

    @property
    def failure(self) -> _Failure | None: ...


class BackendMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.run_stage = Histogram(
            "playground_run_stage_seconds",
            "Seconds a stored run spent per stage (engine, sae, db, total), by outcome.",
            ["stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "playground_limit_refusals",
            "Requests refused by the limits before their route ran, by error code "
            "(rate_limited, overloaded, service_unavailable) and route class (gpu, read).",
            ["code", "route_class"],
            registry=registry,
        )
        self.pool = Gauge(
            "playground_db_pool_connections",
            "Postgres pool connections by state (in_use, idle), at the last scrape.",
            ["state"],
            registry=registry,
        )
        self.fold_backlog = Gauge(
            "playground_feature_fold_backlog",
            "Runs (queue=runs) and removals (queue=removals) waiting for the feature fold.",
            ["queue"],
            registry=registry,
        )
        self.streams = Gauge(
            "playground_streaming_runs_in_flight",
            "Streamed runs whose response is still open.",
            registry=registry,
        )
        self.ttft = Histogram(
            "playground_run_ttft_seconds",
            "Seconds from a streamed run's request to its first token frame.",
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        for stage in STAGES:  # every series exists from the start (rate() needs a zero)
            for outcome in ("ok", "failed"):
                self.run_stage.labels(stage, outcome)
        for state in ("in_use", "idle"):
            self.pool.labels(state)
        for queue in ("runs", "removals"):
            self.fold_backlog.labels(queue)

    # -- runs --------------------------------------------------------------------------------

    def stored(self, record: StoredRun, db_ms: float) -> None:
        """A run was written: its stage times and the console's one line."""
        timings, outcome = record.timings, record.status
        total_ms = (timings.total or 0.0) + db_ms
        for stage, ms in (("engine", timings.engine), ("sae", timings.sae), ("db", db_ms)):
            if ms is not None:
                self.run_stage.labels(stage, outcome).observe(ms / 1000)
        self.run_stage.labels("total", outcome).observe(total_ms / 1000)
        if run_logger.isEnabledFor(logging.INFO):
            run_logger.info(
                "run %s %s engine=%s sae=%s db=%.1fms total=%.1fms%s",
                record.request_id,
                record.status,
                _ms(timings.engine),
                _ms(timings.sae),
                db_ms,
                total_ms,
                f" error={record.failure.code}" if record.failure else "",
            )

    async def track_stream(
        self, frames: AsyncIterator[bytes], start: float
    ) -> AsyncIterator[bytes]:
        """``frames`` passed through, counted in flight; the first token frame's time is TTFT."""
        self.streams.inc()
        first = True
        try:
            async for frame in frames:
                if first and frame.startswith(_TOKEN_FRAME):
                    self.ttft.observe(time.perf_counter() - start)
                    first = False
                yield frame
        finally:
            self.streams.dec()
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()

    def refused(self, code: str, route_class: str) -> None:
        self.refusals.labels(code, route_class).inc()

    # -- read at scrape time -----------------------------------------------------------------

    async def refresh(self, app: FastAPI) -> None:
        pool: asyncpg.Pool | None = getattr(app.state, "pool", None)
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        self.pool.labels("in_use").set(size - idle)
        self.pool.labels("idle").set(idle)
        try:
            async with asyncio.timeout(2.0), pool.acquire() as conn:
                runs, removals = await fold_sql.pending_counts(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            logger.warning("fold backlog not read: %s", type(exc).__name__)
            return
        self.fold_backlog.labels("runs").set(runs)
        self.fold_backlog.labels("removals").set(removals)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"

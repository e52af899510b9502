"""The one write of a run, blocking or streamed: its rows in one statement, then the fold is
told. A streamed run receives this writer, not the whole service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from backend.activations import storage
from backend.activations.plan import RunPlan
from backend.activations.protocol import ActivationRunRequest
from backend.activations.record import Generation, RunFailure, RunRecord, RunTimings
from backend.db import queries, tombstones
from backend.db.pool import connection
from backend.limits import quota
from backend.limits.slot import current_client
from backend.metrics import BackendMetrics
from common.errors import ApiError
from common.timing import elapsed_ms

logger = logging.getLogger(__name__)


class RunWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        db_timeout_s: float,
        on_stored: Callable[[], None] = lambda: None,
        metrics: BackendMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.db_timeout_s = db_timeout_s
        # Told after every write (the feature fold wakes up).
        self.on_stored = on_stored
        # Every stored run's stage times and its one INFO line (backend/metrics.py).
        self.metrics = metrics

    async def store(self, record: RunRecord) -> float:
        """Write the run's rows in one statement; returns the write's milliseconds."""
        start = time.perf_counter()
        # Packing the timeline is CPU work: off the event loop, which relays other runs' tokens
        # meanwhile, and before a pooled connection is held.
        run_rows = await asyncio.to_thread(storage.rows, record)
        async with connection(self.pool, self.db_timeout_s) as conn, conn.transaction():
            # Deleted while it ran: dropped, never written back (backend/db/tombstones.py).
            if not await tombstones.claim_is_live(conn, record.request_id):
                logger.info("run %s was deleted while running: dropped", record.request_id)
                return elapsed_ms(start)
            await queries.save_run(conn, run_rows.index, run_rows.preview, run_rows.features)
            await quota.record(conn, current_client(), storage.stored_bytes(run_rows))
        self.on_stored()
        db_ms = elapsed_ms(start)
        if self.metrics is not None:
            self.metrics.stored(record, db_ms)
        return db_ms

    async def store_failure(
        self,
        req: ActivationRunRequest,
        plan: RunPlan,
        generation: Generation | None,
        failure: RunFailure,
        timings: RunTimings,
    ) -> None:
        """Record a failed run (the caller still answers its own error); never over a run with
        this id that succeeded (``queries.save_run`` guards that)."""
        record = RunRecord.failed(
            request_id=plan.request_id,
            created_at=plan.created_at,
            model_id=plan.model_id,
            prompt=req.prompt,
            generation=generation,
            failure=failure,
            timings=timings,
            parse_special_tokens=req.parse_special_tokens,
        )
        try:
            await self.store(record)
        except ApiError as db_exc:
            # The caller must still see the upstream's error, not the database's.
            logger.warning("could not record failed run %s: %s", plan.request_id, db_exc.message)

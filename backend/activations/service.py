"""Run orchestration: engine, then SAE on the full sequence, then one atomic write (streamed
runs: ``streaming.py``, same record and write)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from backend.activations import storage
from backend.activations.extraction import extract
from backend.activations.protocol import ActivationRunRequest
from backend.activations.record import (
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
    pg_text,
)
from backend.activations.results import RunView
from backend.activations.streaming import StreamedRun
from backend.activations.views import run_view
from backend.db import queries
from backend.db.pool import connection
from backend.settings import Settings
from backend.upstreams.engine import EngineClient, GenerateRequest
from backend.upstreams.sae import SaeClient
from common.errors import ApiError, InvalidRequest
from common.timing import elapsed_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run request resolves to before any upstream is called."""

    request_id: str
    created_at: datetime
    model_id: str
    collect: bool
    sae_id: str
    sae_layer: int


class ActivationService:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, engine: EngineClient, sae: SaeClient
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.engine = engine
        self.sae = sae
        # Streamed runs' tasks, held until they end (the event loop keeps only weak references).
        self.background: set[asyncio.Task[None]] = set()

    async def run(self, req: ActivationRunRequest, public_base_url: str) -> RunView:
        start = time.perf_counter()
        plan = self._plan(req)
        generation, timings = None, RunTimings()
        try:
            generation, engine_ms = await self._generate(req, plan)
            timings = replace(timings, engine=engine_ms)
            extraction = None
            if plan.collect:
                extraction, sae_ms = await extract(
                    self.sae,
                    generation,
                    sae_id=plan.sae_id,
                    layer=plan.sae_layer,
                    top_k=req.sae_top_k,
                )
                timings = replace(timings, sae=sae_ms)
        except ApiError as exc:
            if exc.upstream is not None:
                failure = RunFailure(exc.code, pg_text(exc.message), exc.upstream)
                timings = replace(timings, total=elapsed_ms(start))
                await self.store_failure(plan, req.prompt, generation, failure, timings)
            raise
        record = RunRecord(
            request_id=plan.request_id,
            created_at=plan.created_at,
            model_id=generation.model_id,
            prompt=req.prompt,
            status="ok",
            generation=generation,
            extraction=extraction,
            failure=None,
            timings=replace(timings, total=elapsed_ms(start)),
        )
        db_ms = await self.store(record)
        return run_view(replace(record, timings=replace(record.timings, db=db_ms)), public_base_url)

    def _plan(self, req: ActivationRunRequest) -> RunPlan:
        """Check the configured caps and resolve the defaults."""
        if len(req.prompt) > self.settings.playground_max_prompt_chars:
            raise InvalidRequest(
                f"prompt: at most {self.settings.playground_max_prompt_chars} characters"
            )
        if req.max_tokens > self.settings.playground_max_tokens:
            raise InvalidRequest(f"max_tokens: at most {self.settings.playground_max_tokens}")
        known = {
            self.settings.playground_default_model_id,
            *self.settings.playground_activation_models,
        }
        return RunPlan(
            request_id=req.request_id or uuid.uuid4().hex,
            created_at=datetime.now(UTC),
            model_id=req.model_id
            if req.model_id in known
            else self.settings.playground_default_model_id,
            collect=req.collect_activations and req.inline_sae,
            sae_id=req.sae_id or self.settings.playground_default_sae_id,
            sae_layer=(
                req.sae_layer
                if req.sae_layer is not None
                else self.settings.playground_default_sae_layer
            ),
        )

    @staticmethod
    def engine_request(req: ActivationRunRequest, plan: RunPlan) -> GenerateRequest:
        return GenerateRequest(
            prompt=req.prompt,
            model_id=plan.model_id,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            seed=req.seed,
            chat=req.chat,
            request_id=plan.request_id,
        )

    async def _generate(self, req: ActivationRunRequest, plan: RunPlan) -> tuple[Generation, float]:
        start = time.perf_counter()
        answer = await self.engine.generate(self.engine_request(req, plan))
        return Generation.of(answer), elapsed_ms(start)

    async def open_stream(
        self, req: ActivationRunRequest, public_base_url: str
    ) -> AsyncIterator[bytes]:
        """A streamed run's SSE frames. What can fail before the stream starts (our caps, the
        engine's own 422) raises here, to be answered as plain HTTP; the rest streams."""
        start = time.perf_counter()
        plan = self._plan(req)
        try:
            stream = await self.engine.open_stream(self.engine_request(req, plan))
        except ApiError as exc:
            if exc.upstream is not None:
                failure = RunFailure(exc.code, pg_text(exc.message), exc.upstream)
                timings = RunTimings(total=elapsed_ms(start))
                await self.store_failure(plan, req.prompt, None, failure, timings)
            raise
        run = StreamedRun(self, req, plan, stream, public_base_url, start)
        return run.frames()

    async def store(self, record: RunRecord) -> float:
        """Write the run's rows in one statement; returns the write's milliseconds."""
        start = time.perf_counter()
        async with connection(self.pool, self.settings.playground_db_timeout_s) as conn:
            await queries.save_run(conn, storage.index_row(record), storage.preview_row(record))
        return elapsed_ms(start)

    async def store_failure(
        self,
        plan: RunPlan,
        prompt: str,
        generation: Generation | None,
        failure: RunFailure,
        timings: RunTimings,
        *,
        keep_success: bool = False,
    ) -> None:
        """Record a failed run (the caller still answers its own error). ``keep_success``: not
        over a run with this id that succeeded (a departed client's run)."""
        record = RunRecord(
            request_id=plan.request_id,
            created_at=plan.created_at,
            model_id=generation.model_id if generation else plan.model_id,
            prompt=prompt,
            status="failed",
            generation=generation,
            extraction=None,
            failure=failure,
            timings=timings,
        )
        try:
            if keep_success:
                async with connection(self.pool, self.settings.playground_db_timeout_s) as conn:
                    await queries.save_failure_unless_ok(conn, storage.index_row(record))
            else:
                await self.store(record)
        except ApiError as db_exc:
            # The caller must still see the upstream's error, not the database's.
            logger.warning("could not record failed run %s: %s", plan.request_id, db_exc.message)

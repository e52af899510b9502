"""Run orchestration: engine, then SAE on the full sequence, then one atomic write (streamed
runs: ``streaming.py``, same record and write)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from backend.activations.budget import max_positions, over_budget
from backend.activations.extraction import extract
from backend.activations.limits import check_run_limits
from backend.activations.ownership import OWNER_HEADER, RunOwnership
from backend.activations.pacing import FramePacing
from backend.activations.plan import RunPlan
from backend.activations.protocol import ActivationRunRequest
from backend.activations.record import (
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
    pg_text,
)
from backend.activations.results import RunView
from backend.activations.stages import StageClock
from backend.activations.steer_stream import open_pair_stream
from backend.activations.steering import SteeringRuns
from backend.activations.streaming import StreamedRun
from backend.activations.views import run_view
from backend.activations.writer import RunWriter
from backend.metrics import BackendMetrics
from backend.settings import Settings
from backend.upstreams.engine import EngineClient, GenerateRequest, TokenizeRequest
from backend.upstreams.sae import SaeClient
from common.errors import ApiError
from common.timing import elapsed_ms

logger = logging.getLogger(__name__)


class ActivationService:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        engine: EngineClient,
        sae: SaeClient,
        on_stored: Callable[[], None] = lambda: None,
        metrics: BackendMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.engine = engine
        self.sae = sae
        self.ownership = RunOwnership(pool, settings.playground_db_timeout_s)
        # The run's one write; told after every write: on_stored (the feature fold wakes up).
        self.writer = RunWriter(pool, settings.playground_db_timeout_s, on_stored, metrics)
        self.metrics = metrics
        # Streamed runs' tasks, held until they end (the event loop keeps only weak references).
        self.background: set[asyncio.Task[None]] = set()
        self.steering = SteeringRuns(self)
        # Raises (404 sae_not_found) for an SAE the catalog does not know: set by the app to
        # the SAE catalog's resolve, so a bad sae_id/layer is refused before any generation.
        self.check_sae: Callable[[str, int], Awaitable[object]] | None = None

    async def _check_sae(self, plan: RunPlan) -> None:
        if plan.collect and self.check_sae is not None:
            await self.check_sae(plan.sae_id, plan.sae_layer)

    async def _check_budget(self, req: ActivationRunRequest, plan: RunPlan) -> None:
        """422 ``timeline_too_large`` when the run's timeline could be over a cap (budget.py):
        the cheap bound from the prompt's bytes first; only when that is over a cap, the
        engine's exact token count of the prompt (+ ``max_tokens``) decides. Before the claim,
        so a refusal leaves nothing; a failed count is the engine's 502/503/504."""
        if not plan.collect:
            return
        caps = {
            "max_features": self.settings.playground_max_timeline_features,
            "max_bytes": self.settings.playground_max_timeline_bytes,
        }
        bound = max_positions(req.prompt, req.max_tokens)
        if over_budget(bound, req.sae_top_k, exact=False, **caps) is None:
            return
        count = await self.engine.count_tokens(
            TokenizeRequest(
                text=req.prompt, chat=req.chat, parse_special_tokens=req.parse_special_tokens
            )
        )
        refusal = over_budget(count + req.max_tokens, req.sae_top_k, exact=True, **caps)
        if refusal is not None:
            raise refusal

    async def run(
        self, req: ActivationRunRequest, public_base_url: str, owner_token: str | None = None
    ) -> RunView:
        """Plan (caps: 422), claim the id (409 ``run_owned`` for a foreign one), generate,
        extract, store. Nothing upstream is called before the claim holds."""
        if req.steer:  # steered, and with compare its default beside it (steering.py)
            return await self.steering.run(req, public_base_url, owner_token)
        start = time.perf_counter()
        plan = self._plan(req)
        await self._check_budget(req, plan)
        await self._check_sae(plan)
        new_token = await self.ownership.claim(plan.request_id, owner_token)
        if new_token is None:  # a re-run: no longer in a steering pair
            await self.steering.forget_pair(plan.request_id)
        try:
            view = await self._run_claimed(req, plan, public_base_url, start)
        except ApiError as exc:
            if new_token is not None:  # the only chance to learn the token of this new run
                exc.headers = {**(exc.headers or {}), OWNER_HEADER: new_token}
            raise
        view["owner_token"] = new_token
        return view

    async def delete(self, request_id: str, owner_token: str | None) -> None:
        await self.ownership.delete(request_id, owner_token)

    async def _run_claimed(
        self, req: ActivationRunRequest, plan: RunPlan, public_base_url: str, start: float
    ) -> RunView:
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
                await self.writer.store_failure(req, plan, generation, failure, timings)
            raise
        record = RunRecord.ok(
            request_id=plan.request_id,
            created_at=plan.created_at,
            prompt=req.prompt,
            generation=generation,
            extraction=extraction,
            timings=replace(timings, total=elapsed_ms(start)),
            parse_special_tokens=req.parse_special_tokens,
        )
        db_ms = await self.writer.store(record)
        return run_view(replace(record, timings=replace(record.timings, db=db_ms)), public_base_url)

    def _plan(self, req: ActivationRunRequest) -> RunPlan:
        """Check the configured caps and resolve the defaults (the timeline's budget may need
        the engine: ``_check_budget``, awaited before the claim)."""
        check_run_limits(req, self.settings)
        collect = req.collect_activations and req.inline_sae
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
            collect=collect,
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
            parse_special_tokens=req.parse_special_tokens,
            request_id=plan.request_id,
        )

    async def _generate(self, req: ActivationRunRequest, plan: RunPlan) -> tuple[Generation, float]:
        start = time.perf_counter()
        answer = await self.engine.generate(self.engine_request(req, plan))
        return Generation.of(answer), elapsed_ms(start)

    async def open_stream(
        self,
        req: ActivationRunRequest,
        public_base_url: str,
        owner_token: str | None = None,
        clock: StageClock | None = None,
    ) -> AsyncIterator[bytes]:
        """A streamed run's SSE frames. What can fail before the stream starts (our caps, the
        claim's 409, the engine's own 422) raises here, to be answered as plain HTTP, exactly
        as the blocking run answers it (a new run's owner token in ``X-Run-Owner``); the rest
        streams, the new run's owner token in ``started`` and ``done``."""
        if req.steer:  # steered, and with compare its default beside it (steer_stream.py)
            return await open_pair_stream(self.steering, req, public_base_url, owner_token)
        start = time.perf_counter()
        plan = self._plan(req)
        await self._check_budget(req, plan)
        await self._check_sae(plan)
        new_token = await self.ownership.claim(plan.request_id, owner_token)
        if new_token is None:  # a re-run: no longer in a steering pair
            await self.steering.forget_pair(plan.request_id)
        if clock is not None:
            clock.mark("claimed")
        try:
            stream = await self.engine.open_stream(self.engine_request(req, plan))
        except ApiError as exc:
            if exc.upstream is not None:
                failure = RunFailure(exc.code, pg_text(exc.message), exc.upstream)
                timings = RunTimings(total=elapsed_ms(start))
                await self.writer.store_failure(req, plan, None, failure, timings)
            if new_token is not None:  # the only chance to learn the token of this new run
                exc.headers = {**(exc.headers or {}), OWNER_HEADER: new_token}
            raise
        if clock is not None:
            clock.mark("engine_open")
        run = StreamedRun(
            self.writer,
            self.sae,
            self.background,
            FramePacing(self.settings),
            req,
            plan,
            stream,
            public_base_url,
            start,
            new_token,
            clock,
        )
        if self.metrics is None:
            return run.frames()
        return self.metrics.track_stream(run.frames(), start)

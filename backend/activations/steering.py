"""Steered runs (docs/steering.md): ``steer`` on a run adds ``strength x`` each feature's
decoder row to the residual stream inside the engine; with ``compare`` the default
(unsteered) answer is generated beside it with the same seed and settings, concurrently.

Order: our bounds (422, before anything), the claims (the steered id as any run's, the
default's with the same owner token), the decoder rows from the SAE service, then both
generations and extractions at once, then one transaction that writes both runs and their
links (backend/db/pairs.py). A request an upstream refuses (4xx: an unknown feature, an engine
that cannot steer) leaves nothing: its new claims are released. An upstream failure (5xx,
timeout) records the steered run as failed, as any run's, with its steering spec.
Streamed pairs: ``steer_stream.py``.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from backend.activations import storage
from backend.activations.extraction import extract
from backend.activations.ownership import OWNER_HEADER, token_hash
from backend.activations.record import Generation, RunFailure, RunRecord, RunTimings, pg_text
from backend.activations.steer_parts import (
    PairPlan,
    SteeringHost,
    SteerItem,
    Vectors,
    first_error,
    record_of,
    row_set,
    steer_items,
    steering_spec,
)
from backend.activations.views import run_view
from backend.db import owners, pairs, tombstones
from backend.db.pool import connection
from backend.limits import quota
from backend.limits.slot import current_client
from backend.upstreams.engine import SteerVector
from common.errors import ApiError, RunOwned, UpstreamError
from common.timing import elapsed_ms

if TYPE_CHECKING:
    from backend.activations.plan import RunPlan
    from backend.activations.protocol import ActivationRunRequest
    from backend.activations.results import RunView

logger = logging.getLogger(__name__)


class SteeringRuns:
    def __init__(self, service: SteeringHost) -> None:
        self.service = service
        self.settings = service.settings

    # -- before any upstream ---------------------------------------------------------------

    async def claim(
        self, req: ActivationRunRequest, plan: RunPlan, owner_token: str | None
    ) -> PairPlan:
        """The steered id as any run's (409 ``run_owned``); with ``compare`` the default's id
        (a re-run's earlier default, else a new one) under the same owner token."""
        items = steer_items(req, plan, self.settings)
        await self.service._check_budget(req, plan)
        await self.service._check_sae(plan)
        new_token = await self.service.ownership.claim(plan.request_id, owner_token)
        new_ids = [plan.request_id] if new_token is not None else []
        default = None
        if req.compare:
            token = new_token or owner_token
            assert token is not None  # a claim without a new token matched the presented one
            try:
                default_id = await self._claim_default(plan.request_id, token, new_ids)
            except ApiError:
                async with connection(
                    self.service.pool, self.settings.playground_db_timeout_s
                ) as conn:
                    await pairs.release_claims(conn, new_ids)
                raise
            default = replace(plan, request_id=default_id)
        seed = req.seed
        if req.compare and seed is None:  # one seed for both answers
            seed = secrets.randbelow(2**31)
        return PairPlan(plan, default, items, seed, new_token, new_ids)

    async def forget_pair(self, request_id: str) -> None:
        """Before a plain re-run of an id that was in a pair: the pair lets go of it."""
        async with connection(self.service.pool, self.settings.playground_db_timeout_s) as conn:
            await pairs.forget_pair(conn, request_id)

    async def _claim_default(self, steered_id: str, token: str, new_ids: list[str]) -> str:
        wanted = token_hash(token)
        async with connection(self.service.pool, self.settings.playground_db_timeout_s) as conn:
            earlier = await pairs.default_of(conn, steered_id)
            for default_id in (earlier, uuid.uuid4().hex):
                if default_id is None:
                    continue
                claim = await owners.claim_run(conn, default_id, wanted)
                if claim.created:
                    new_ids.append(default_id)
                    return default_id
                if claim.owner_hash is not None and secrets.compare_digest(
                    claim.owner_hash, wanted
                ):
                    return default_id
        raise RunOwned(f"run {steered_id!r}: its default run belongs to another owner")

    # -- upstreams -------------------------------------------------------------------------

    async def vectors(self, items: list[SteerItem]) -> Vectors:
        """The decoder rows from the SAE service, one call per (SAE, layer)."""
        groups: dict[tuple[str, int], list[int]] = {}
        for item in items:
            groups.setdefault((item.sae_id, item.layer), []).append(item.feature_id)
        rows: dict[tuple[str, int, int], tuple[str, float]] = {}
        for (sae_id, layer), feature_ids in groups.items():
            answer = await self.service.sae.steering_vectors(sae_id, layer, feature_ids)
            got = [v.feature_id for v in answer.vectors]
            if got != feature_ids:
                raise UpstreamError(
                    f"{self.service.sae.name} answered rows {got} for {feature_ids}",
                    upstream=self.service.sae.name,
                )
            for vector in answer.vectors:
                rows[(sae_id, layer, vector.feature_id)] = (vector.vector_b64, vector.norm)
        steer, norms = [], []
        for item in items:
            vector_b64, norm = rows[(item.sae_id, item.layer, item.feature_id)]
            steer.append(SteerVector(layer=item.layer, vector_b64=vector_b64, scale=item.strength))
            norms.append(norm)
        return Vectors(steer, norms)

    async def leg(
        self,
        req: ActivationRunRequest,
        plan: RunPlan,
        seed: int | None,
        steer: list[SteerVector] | None,
    ) -> RunRecord:
        """One run of the pair, generated and extracted (not stored)."""
        start = time.perf_counter()
        engine_req = self.service.engine_request(req, plan).model_copy(
            update={"seed": seed, "steer": steer}
        )
        generation = Generation.of(await self.service.engine.generate(engine_req))
        timings = RunTimings(engine=elapsed_ms(start))
        extraction = None
        if plan.collect:
            extraction, sae_ms = await extract(
                self.service.sae,
                generation,
                sae_id=plan.sae_id,
                layer=plan.sae_layer,
                top_k=req.sae_top_k,
            )
            timings = replace(timings, sae=sae_ms)
        return record_of(req, plan, generation, extraction, replace(timings, total=None))

    # -- the blocking run ------------------------------------------------------------------

    async def run(
        self, req: ActivationRunRequest, public_base_url: str, owner_token: str | None
    ) -> RunView:
        start = time.perf_counter()
        pair = await self.claim(req, self.service._plan(req), owner_token)
        try:
            vectors = await self.vectors(pair.items)
            legs = [self.leg(req, pair.steered, pair.seed, vectors.steer)]
            if pair.default is not None:
                legs.append(self.leg(req, pair.default, pair.seed, None))
            records = await first_error(legs)
            records = [
                replace(r, timings=replace(r.timings, total=elapsed_ms(start))) for r in records
            ]
            views = await self.store(pair, vectors, records, public_base_url)
        except ApiError as exc:
            await self.refused_or_failed(req, pair, exc, start)
            raise
        return views[0]

    # -- storing ---------------------------------------------------------------------------

    async def store(
        self, pair: PairPlan, vectors: Vectors, records: list[RunRecord], public_base_url: str
    ) -> list[RunView]:
        """Both runs and their links in one transaction; the answers (steered first), each
        with the pair's steering figures and its place in the pair."""
        steered = records[0]
        default = records[1] if len(records) > 1 else None
        steering = steering_spec(pair, vectors, steered, default)
        start = time.perf_counter()
        rows = [storage.rows(r) for r in records]
        pool, timeout = self.service.pool, self.settings.playground_db_timeout_s
        async with connection(pool, timeout) as conn, conn.transaction():
            # Deleted while it ran: dropped, never written back (backend/db/tombstones.py).
            if await tombstones.claim_is_live(conn, steered.request_id):
                await pairs.save_pair(
                    conn,
                    row_set(rows[0]),
                    row_set(rows[1]) if len(rows) > 1 else None,
                    orjson.dumps(steering).decode(),
                )
                stored = sum(storage.stored_bytes(r) for r in rows)
                await quota.record(conn, current_client(), stored)
            else:
                logger.info("run %s was deleted while running: dropped", steered.request_id)
        db_ms = elapsed_ms(start)
        self.service.writer.on_stored()
        if self.service.writer.metrics is not None:  # each run's stage times, as for any run
            for stored_run in records:
                self.service.writer.metrics.stored(stored_run, db_ms)
        views = []
        for record, role, other in (
            (steered, "steered", default),
            (default, "default", steered),
        ):
            if record is None:
                continue
            view = run_view(
                replace(record, timings=replace(record.timings, db=db_ms)), public_base_url
            )
            view["steering"] = steering
            view["pair"] = (
                {"request_id": other.request_id, "role": role} if other is not None else None
            )
            view["owner_token"] = pair.new_token
            views.append(view)
        return views

    async def refused_or_failed(
        self,
        req: ActivationRunRequest,
        pair: PairPlan,
        exc: ApiError,
        start: float,
        generation: Generation | None = None,
    ) -> None:
        """A refusal (4xx, or our own error) leaves nothing: this request's claims go. An
        upstream failure records the steered run as failed, with its spec (the default's new
        claim goes); the new run's owner token rides on the error, as for any run."""
        refused = exc.upstream is None or exc.status_code < 500
        failure = None if refused else RunFailure(exc.code, pg_text(exc.message), exc.upstream)
        await self.record_failure(req, pair, failure, start, generation)
        if not refused and pair.new_token is not None:
            exc.headers = {**(exc.headers or {}), OWNER_HEADER: pair.new_token}

    async def record_failure(
        self,
        req: ActivationRunRequest,
        pair: PairPlan,
        failure: RunFailure | None,
        start: float,
        generation: Generation | None = None,
    ) -> None:
        """Best effort: the caller still answers its own error, not the database's."""
        steered_id = pair.steered.request_id
        release = pair.new_ids if failure is None else [i for i in pair.new_ids if i != steered_id]
        try:
            async with connection(self.service.pool, self.settings.playground_db_timeout_s) as conn:
                if failure is not None:
                    record = replace(
                        record_of(req, pair.steered, generation, None, RunTimings()),
                        status="failed",
                        failure=failure,
                        timings=RunTimings(total=elapsed_ms(start)),
                    )
                    steering = steering_spec(pair, None, None, None)
                    await pairs.save_steered_failure(
                        conn, storage.index_row(record), orjson.dumps(steering).decode()
                    )
                if release:
                    await pairs.release_claims(conn, release)
        except ApiError as db_exc:
            logger.warning("steered run %s: not recorded: %s", steered_id, db_exc.message)
        if failure is not None:
            self.service.writer.on_stored()

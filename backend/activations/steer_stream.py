"""A streamed steered run, and with ``compare`` its default beside it, on one event stream.

Each run streams as a plain streamed run does (``streaming.py``: ``started``, ``token``,
``features``), every event's data adding ``role`` (``steered`` or ``default``), the two runs'
events interleaved as they come. Once both are complete they are stored in one transaction
(``steering.py``), then ``done`` comes for the default run (if any), and last ``done`` for the
steered run, each the blocking answer of its run with the pair's steering figures. A failure of
either run ends both: one ``error`` (its ``role`` the run that failed). A client that leaves
cancels both; the steered run is recorded as failed (``client_closed``), as a plain run is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.activations.pacing import FramePacing
from backend.activations.record import RunFailure, RunRecord
from backend.activations.steer_parts import PairPlan, Vectors, first_error, record_of
from backend.activations.steering import SteeringRuns
from backend.activations.stopped import CLIENT_CLOSED
from backend.activations.streaming import StreamedRun
from backend.limits.slot import gpu_work_done
from backend.upstreams.engine import GenerationStream
from common import sse
from common.errors import ApiError, ErrorResponse
from common.timing import elapsed_ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from backend.activations.plan import RunPlan
    from backend.activations.protocol import ActivationRunRequest


class PairLeg(StreamedRun):
    """One run of the pair: its events tagged with its role onto the pair's queue; produces
    its record instead of storing it."""

    def __init__(self, steering: SteeringRuns, role: str, sink: FramePacing, **kwargs: Any) -> None:
        service = steering.service
        super().__init__(service.writer, service.sae, service.background, sink, **kwargs)
        self.role = role

    async def _put(self, event: str, data: Any) -> None:
        await self.pacing.put(sse.frame(event, {**data, "role": self.role}))

    async def produce(self) -> RunRecord:
        try:
            await self._relay_tokens()
            extraction, sae_ms = await self.features if self.features is not None else (None, None)
        except BaseException:
            await self._stop(self.features)
            raise
        finally:
            await self.stream.aclose()
        assert self.generation is not None
        timings = replace(self.timings, sae=sae_ms, total=elapsed_ms(self.start))
        return record_of(self.req, self.plan, self.generation, extraction, timings)


async def open_pair_stream(
    steering: SteeringRuns,
    req: ActivationRunRequest,
    public_base_url: str,
    owner_token: str | None,
) -> AsyncIterator[bytes]:
    """As ``ActivationService.open_stream``: what fails before the streams start raises here
    (answered as plain HTTP); the rest streams."""
    start = time.perf_counter()
    pair = await steering.claim(req, steering.service._plan(req), owner_token)
    streams: list[GenerationStream] = []
    try:
        vectors = await steering.vectors(pair.items)
        for plan, steer in ((pair.steered, vectors.steer), (pair.default, None)):
            if plan is not None:
                engine_req = steering.service.engine_request(req, plan).model_copy(
                    update={"seed": pair.seed, "steer": steer}
                )
                streams.append(await steering.service.engine.open_stream(engine_req))
    except ApiError as exc:
        for stream in streams:
            await stream.aclose()
        await steering.refused_or_failed(req, pair, exc, start)
        raise
    return PairStream(steering, req, pair, vectors, streams, public_base_url, start).frames()


class PairStream:
    def __init__(
        self,
        steering: SteeringRuns,
        req: ActivationRunRequest,
        pair: PairPlan,
        vectors: Vectors,
        streams: list[GenerationStream],
        public_base_url: str,
        start: float,
    ) -> None:
        self.steering = steering
        self.req = req
        self.pair = pair
        self.vectors = vectors
        self.public_base_url = public_base_url
        self.start = start
        # Both legs' frames, bounded: a client that stops reading is detached (pacing.py).
        self.pacing = FramePacing(steering.settings)
        plans: list[tuple[str, RunPlan]] = [("steered", pair.steered)]
        if pair.default is not None:
            plans.append(("default", pair.default))
        self.legs = [
            PairLeg(
                steering,
                role,
                self.pacing,
                req=req,
                plan=plan,
                stream=stream,
                public_base_url=public_base_url,
                start=start,
                owner_token=pair.new_token,
            )
            for (role, plan), stream in zip(plans, streams, strict=True)
        ]

    def frames(self) -> AsyncIterator[bytes]:
        return self.pacing.frames_of(self._produce, self.steering.service.background)

    async def _put(self, event: str, data: dict[str, Any]) -> None:
        await self.pacing.put(sse.frame(event, data))

    async def _produce(self) -> None:
        failing = "steered"

        async def leg_of(leg: PairLeg) -> RunRecord:
            nonlocal failing
            try:
                return await leg.produce()
            except ApiError:
                failing = leg.role
                raise

        try:
            records = await first_error([leg_of(leg) for leg in self.legs])
            views = await self.steering.store(
                self.pair, self.vectors, records, self.public_base_url
            )
            for view, role in reversed(list(zip(views, ("steered", "default"), strict=False))):
                await self._put("done", {**view, "role": role})
        except ApiError as exc:
            steered = self.legs[0].generation
            await self.steering.refused_or_failed(self.req, self.pair, exc, self.start, steered)
            body = ErrorResponse(error=exc.to_info()).model_dump(mode="json")
            await self._put("error", {**body, "role": failing})
        except asyncio.CancelledError:
            failure = RunFailure(CLIENT_CLOSED, "the client closed the stream", None)
            await self.steering.record_failure(
                self.req, self.pair, failure, self.start, self.legs[0].generation
            )
            raise
        finally:
            await gpu_work_done()  # the slots are for GPU work, not for the client's reading
            self.pacing.close()

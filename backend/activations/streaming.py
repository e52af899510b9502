"""A streamed run (``Accept: text/event-stream``): the engine's tokens relayed as they come,
SAE features of the sequence so far computed alongside, then the same record and the same
single write as the blocking run.

Events (contracts.md, "Streaming (SSE)"): ``started``, ``token`` per output token,
``features`` (timeline entries for the positions just computed), then ``done`` (the blocking
answer) or ``error`` (the error body).

Features: the prompt's as soon as the engine has tokenized it (while the answer is generated),
then the output's as it grows, each chunk only the positions not yet sent, through the SAE
service's incremental extraction (``/extract_features`` with this run's ``stream_id``: its KV
cache there runs only the new positions; where the cache is gone it recomputes the prefix).
Features at position p depend only on tokens <= p, so the chunks joined equal one extraction
of the whole sequence (within float tolerance; tested); they are what is stored, in the same
record and write as the blocking run. Chunks grow by themselves when the SAE is slower than
generation; the last one, once the answer is complete, ends the SAE service's stream.

A client that leaves cancels the run: the engine stream is closed (vLLM aborts), the SAE call
is cancelled, and a failed run with code ``client_closed`` is recorded unless a run with this
id already succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.activations.extraction import checked_extraction, storable_entries
from backend.activations.record import (
    Extraction,
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
    pg_text,
)
from backend.activations.views import run_view
from backend.upstreams.engine import GenerateResponse, GenerationStream, PromptEvent, TokenEvent
from backend.upstreams.sae import ExtractRequest
from common import sse
from common.errors import ApiError, ErrorResponse, UpstreamError
from common.timing import elapsed_ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from backend.activations.protocol import ActivationRunRequest
    from backend.activations.service import ActivationService, RunPlan
    from backend.activations.stages import StageClock

logger = logging.getLogger(__name__)

# An intermediate extraction waits for at least this many new output positions.
FEATURE_CHUNK = 16
CLIENT_CLOSED = "client_closed"


class StreamedRun:
    def __init__(
        self,
        service: ActivationService,
        req: ActivationRunRequest,
        plan: RunPlan,
        stream: GenerationStream,
        public_base_url: str,
        start: float,
        owner_token: str | None = None,
        clock: StageClock | None = None,
    ) -> None:
        self.service = service
        self.req = req
        self.plan = plan
        self.stream = stream
        self.public_base_url = public_base_url
        self.start = start
        # A new run's owner token (None for the owner's re-run), as the blocking answer has it.
        self.owner_token = owner_token
        self.clock = clock  # the TTFT breakdown, when asked for (stages.py)
        self.frames_out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.prompt_ids: list[int] = []
        self.output_ids: list[int] = []
        self.generation: Generation | None = None
        self.grown = asyncio.Event()
        self.timings = RunTimings()
        self.sae_ms = 0.0
        self.sae_positions = 0  # "SAE work": positions run through the truncated forward
        # The feature worker; on self so that a failure or a departed client stops it too.
        self.features: asyncio.Task[tuple[Extraction, float]] | None = None
        self.sae_sent = 0  # positions the SAE service answered for this run's stream
        self.sae_ended = False
        # This run's stream at the SAE service (its KV cache there); unique per attempt.
        self.stream_id = f"{plan.request_id[:64]}.{uuid.uuid4().hex[:16]}"
        self.sae_id: str | None = None  # as the SAE service names what it used
        self.sae_layer: int | None = None

    async def frames(self) -> AsyncIterator[bytes]:
        """The frames as the run produces them. The run is its own task (a database write
        must outlive the response); closing this iterator, as the server does when the client
        goes, cancels it."""
        producer = asyncio.create_task(self._produce())
        self.service.background.add(producer)
        producer.add_done_callback(self.service.background.discard)
        try:
            ended = False
            while not ended and (frame := await self.frames_out.get()) is not None:
                # Whatever queued up meanwhile goes in the same write (SSE allows several events
                # per write): under load, one socket write per event was the relay's cost. The
                # first event never waits for company.
                frames = [frame]
                while not self.frames_out.empty():
                    more = self.frames_out.get_nowait()
                    if more is None:
                        ended = True
                        break
                    frames.append(more)
                yield frames[0] if len(frames) == 1 else b"".join(frames)
        finally:
            producer.cancel()  # no-op when it has finished

    def _put(self, event: str, data: Any) -> None:
        self.frames_out.put_nowait(sse.frame(event, data))

    async def _produce(self) -> None:
        try:
            await self._relay_tokens()
            await self._finish(self.features)
        except ApiError as exc:
            await self._stop(self.features)
            if exc.upstream is not None:  # as the blocking path: upstream failures are runs
                failure = RunFailure(exc.code, pg_text(exc.message), exc.upstream)
                await self._record_failure(failure)
            self._put("error", ErrorResponse(error=exc.to_info()))
        except asyncio.CancelledError:
            await self._stop(self.features)
            failure = RunFailure(CLIENT_CLOSED, "the client closed the stream", None)
            await self._record_failure(failure)  # never over a run that succeeded
            raise
        finally:
            await self.stream.aclose()
            self.frames_out.put_nowait(None)

    def _start_features(self) -> None:
        if self.plan.collect and self.features is None:
            self.features = asyncio.create_task(self._features())

    async def _relay_tokens(self) -> None:
        """Relay the engine's events; start the feature worker with the first token (the
        prompt's chunk then runs beside the rest of the answer, not beside the first token's
        step: where engine and SAE share processors that would delay the first token)."""
        answer: GenerateResponse | None = None
        async for event in self.stream.events():
            if isinstance(event, PromptEvent):
                if self.clock is not None:
                    self.clock.mark("engine_prompt")
                self.prompt_ids = event.prompt_token_ids
                self._put("started", self._started(event))
            elif isinstance(event, TokenEvent):
                position = len(self.prompt_ids) + len(self.output_ids)
                self.output_ids.append(event.token_id)
                token = {**event.model_dump(), "position": position}
                if self.clock is not None and len(self.output_ids) == 1:
                    self.clock.mark("engine_token")
                    self.clock.mark("queued")
                    token["timing_ms"] = self.clock.as_dict()
                self._put("token", token)
                self.grown.set()
                self._start_features()
            else:
                answer = event
        assert answer is not None  # GenerationStream ends with the answer or raises
        if (answer.prompt_token_ids, answer.output_token_ids) != (
            self.prompt_ids,
            self.output_ids,
        ):
            raise UpstreamError("engine: its answer differs from its stream", upstream="engine")
        self.generation = Generation.of(answer)
        self.timings = replace(self.timings, engine=elapsed_ms(self.start))
        self.grown.set()
        self._start_features()  # an answer without tokens

    def _started(self, event: PromptEvent) -> dict[str, Any]:
        tokens = [
            {"position": i, "token_id": token_id, "token": token}
            for i, (token_id, token) in enumerate(
                zip(event.prompt_token_ids, event.tokens, strict=True)
            )
        ]
        return {
            "request_id": self.plan.request_id,
            "model_id": event.model_id,
            "prompt_tokens": tokens,
            "owner_token": self.owner_token,
        }

    async def _features(self) -> tuple[Extraction, float]:
        """Features of the sequence so far, in chunks, each only the positions not yet sent;
        the chunks joined are the run's extraction (the one stored)."""
        sent = 0
        entries: list[Any] = []
        while True:
            done = self.generation is not None
            # The first chunk is the prompt's alone (its features while the answer comes).
            full = self.prompt_ids if sent == 0 and not done else self.prompt_ids + self.output_ids
            if len(full) > sent and (done or sent == 0 or len(full) - sent >= FEATURE_CHUNK):
                entries += await self._extract_chunk(full, sent, end=done)
                sent = self.sae_sent = len(full)
                self.sae_ended = done
                if not done:  # look again: tokens (or the end) may have come meanwhile
                    continue
            elif done and sent:  # the last chunk had every position: only end the stream
                await self._extract_chunk(full, sent, end=True)
                self.sae_ended = True
            if done:
                extraction = await asyncio.to_thread(  # CPU work (serialising): off the loop
                    checked_extraction,
                    self.service.sae.name,
                    entries,
                    len(full),
                    sae_id=self.sae_id or self.plan.sae_id,
                    layer=self.sae_layer if self.sae_layer is not None else self.plan.sae_layer,
                    top_k=self.req.sae_top_k,
                )
                return extraction, self.sae_ms
            # Nothing to do until the sequence grows; no await since `done` and `full` were
            # read, so no wake-up is lost.
            self.grown.clear()
            await self.grown.wait()

    async def _extract_chunk(self, full: list[int], sent: int, *, end: bool) -> list[Any]:
        """The positions of ``full`` (a prefix of the run's sequence) from ``sent`` on, through
        the SAE service's incremental extraction (this run's KV cache there, or the whole
        prefix again where the cache is gone); sent as a ``features`` event."""
        start = time.perf_counter()
        envelope, _ = await self.service.sae.extract(
            ExtractRequest(
                token_ids=full,
                sae_id=self.plan.sae_id,
                layer=self.plan.sae_layer,
                top_k=self.req.sae_top_k,
                output_start=len(self.prompt_ids),
                stream_id=self.stream_id,
                from_position=sent,
                stream_end=end,
            )
        )
        self.sae_ms += elapsed_ms(start)
        self.sae_positions += envelope.work.positions if envelope.work else len(full)
        self.sae_id, self.sae_layer = envelope.sae_id, envelope.layer
        entries = envelope.feature_timeline
        if envelope.from_position != sent or len(entries) != len(full) - sent:
            raise UpstreamError(
                f"{self.service.sae.name} answered {len(entries)} positions from "
                f"{envelope.from_position} for positions {sent}..{len(full) - 1}",
                upstream=self.service.sae.name,
            )
        entries = storable_entries(entries)
        if entries:
            self._put("features", {"entries": entries})
        return entries

    async def _finish(self, features: asyncio.Task[tuple[Extraction, float]] | None) -> None:
        extraction, sae_ms = await features if features is not None else (None, None)
        generation = self.generation
        assert generation is not None
        record = RunRecord(
            request_id=self.plan.request_id,
            created_at=self.plan.created_at,
            model_id=generation.model_id,
            prompt=self.req.prompt,
            status="ok",
            generation=generation,
            extraction=extraction,
            failure=None,
            timings=replace(self.timings, sae=sae_ms, total=elapsed_ms(self.start)),
            parse_special_tokens=self.req.parse_special_tokens,
        )
        db_ms = await self.service.store(record)
        logger.debug("run %s: SAE work %d positions", record.request_id, self.sae_positions)
        done = replace(record, timings=replace(record.timings, db=db_ms))
        view = await asyncio.to_thread(run_view, done, self.public_base_url)  # off the loop
        view["owner_token"] = self.owner_token
        self._put("done", view)

    async def _stop(self, features: asyncio.Task[Any] | None) -> None:
        """End the upstream work: the SAE call, then the engine's generation."""
        if features is not None and not features.done():
            features.cancel()
            await asyncio.gather(features, return_exceptions=True)
        elif features is not None and features.done() and not features.cancelled():
            features.exception()  # retrieved: its error is the one we report
        await self.stream.aclose()
        await self._release_sae_stream()

    async def _release_sae_stream(self) -> None:
        """A run that stops early ends its stream at the SAE service, whose KV cache would
        otherwise wait for its idle eviction. Best effort: a failure here changes nothing."""
        if not self.sae_sent or self.sae_ended:
            return
        full = (self.prompt_ids + self.output_ids)[: self.sae_sent]
        try:
            await asyncio.wait_for(
                self.service.sae.extract(
                    ExtractRequest(
                        token_ids=full,
                        sae_id=self.plan.sae_id,
                        layer=self.plan.sae_layer,
                        top_k=self.req.sae_top_k,
                        stream_id=self.stream_id,
                        from_position=len(full),
                        stream_end=True,
                    )
                ),
                timeout=2.0,
            )
        except (ApiError, TimeoutError):
            logger.debug("run %s: SAE stream not released", self.plan.request_id)
        self.sae_ended = True

    async def _record_failure(self, failure: RunFailure) -> None:
        timings = replace(self.timings, total=elapsed_ms(self.start))
        await self.service.store_failure(self.req, self.plan, self.generation, failure, timings)

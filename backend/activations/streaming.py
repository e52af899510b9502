"""A streamed run (``Accept: text/event-stream``): the engine's tokens relayed as they come,
SAE features of the sequence so far computed alongside, then the same record and the same
single write as the blocking run.

Events (contracts.md, "Streaming (SSE)"): ``started``, ``token`` per output token,
``features`` (timeline entries for the positions just computed), then ``done`` (the blocking
answer) or ``error`` (the error body).

Features: the prompt's once the second token is out (while the rest of the answer is generated),
then the output's as it grows, each chunk only the positions not yet sent, through the SAE
service's incremental extraction (``/extract_features`` with this run's ``stream_id``: its KV
cache there runs only the new positions; where the cache is gone it recomputes the prefix).
Features at position p depend only on tokens <= p, so the chunks joined equal one extraction
of the whole sequence (within float tolerance; tested); they are what is stored, in the same
record and write as the blocking run. Chunks grow by themselves when the SAE is slower than
generation; the last one, once the answer is complete, ends the SAE service's stream.

A client that leaves (Stop) cancels the run: the engine stream is closed (vLLM aborts), the SAE
call is cancelled, and the run is stored as ``stopped`` (``stopped.py``): its answer so far and
the features computed so far, error code ``client_closed``, unless a run with this id already
succeeded.

The module stays one piece (over 300 lines): it is one class, StreamedRun, whose state (the
tokens and features so far, the SAE service's stream, the timings) the token relay, the feature
worker, the finish and the Stop path all read and write; split, each part would reach into
the others' fields.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backend.activations.extraction import checked_extraction, storable_entries
from backend.activations.pacing import FramePacing
from backend.activations.record import (
    Extraction,
    Generation,
    RunFailure,
    RunRecord,
    RunTimings,
    pg_text,
)
from backend.activations.stopped import PartialRun, stopped_record
from backend.activations.views import run_view
from backend.limits.slot import gpu_work_done
from backend.upstreams.engine import GenerateResponse, GenerationStream, PromptEvent, TokenEvent
from backend.upstreams.sae import ExtractRequest
from common import sse
from common.errors import ApiError, ErrorResponse, UpstreamError
from common.timing import elapsed_ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from backend.activations.plan import RunPlan
    from backend.activations.protocol import ActivationRunRequest
    from backend.activations.stages import StageClock
    from backend.activations.writer import RunWriter
    from backend.upstreams.sae import SaeClient

logger = logging.getLogger(__name__)

# An intermediate extraction waits for at least this many new output positions.
FEATURE_CHUNK = 16


class StreamedRun:
    def __init__(
        self,
        writer: RunWriter,
        sae: SaeClient,
        background: set[asyncio.Task[None]],
        pacing: FramePacing,
        req: ActivationRunRequest,
        plan: RunPlan,
        stream: GenerationStream,
        public_base_url: str,
        start: float,
        owner_token: str | None = None,
        clock: StageClock | None = None,
    ) -> None:
        self.writer = writer
        self.sae = sae
        # The service's streamed runs' tasks, held until they end (the loop keeps weak refs).
        self.background = background
        self.req = req
        self.plan = plan
        self.stream = stream
        self.public_base_url = public_base_url
        self.start = start
        # A new run's owner token (None for the owner's re-run), as the blocking answer has it.
        self.owner_token = owner_token
        self.clock = clock  # the TTFT breakdown, when asked for (stages.py)
        # Bounded: a client that stops reading is detached (pacing.py), never buffered for.
        self.pacing = pacing
        self.prompt_ids: list[int] = []
        self.prompt_tokens: list[str] = []
        self.model_id = plan.model_id
        self.output_ids: list[int] = []
        self.output_texts: list[str] = []
        self.sae_entries: list[Any] = []  # the features so far (what a stopped run keeps)
        self.generation: Generation | None = None
        self.grown = asyncio.Event()
        self.timings = RunTimings()
        self.sae_ms = 0.0
        self.sae_positions = 0  # "SAE work": positions run through the truncated forward
        # The feature worker; on self so that a failure or a departed client stops it too.
        self.features: asyncio.Task[tuple[Extraction, float]] | None = None
        self.sae_sent = 0  # positions the SAE service answered for this run's stream
        self.sae_asked = 0  # positions asked for (an unanswered chunk may have made a cache)
        self.sae_ended = False
        # This run's stream at the SAE service (its KV cache there); unique per attempt.
        self.stream_id = f"{plan.request_id[:64]}.{uuid.uuid4().hex[:16]}"
        self.sae_id: str | None = None  # as the SAE service names what it used
        self.sae_layer: int | None = None

    def frames(self) -> AsyncIterator[bytes]:
        """The frames as the run produces them (pacing.FramePacing.frames_of)."""
        return self.pacing.frames_of(self._produce, self.background)

    async def _put(self, event: str, data: Any) -> None:
        await self.pacing.put(sse.frame(event, data))

    async def _produce(self) -> None:
        try:
            await self._relay_tokens()
            await self._finish(self.features)
        except ApiError as exc:
            await self._stop(self.features)
            if exc.upstream is not None:  # as the blocking path: upstream failures are runs
                failure = RunFailure(exc.code, pg_text(exc.message), exc.upstream)
                await self._record_failure(failure)
            await self._put("error", ErrorResponse(error=exc.to_info()))
        except asyncio.CancelledError:
            await self._stop(self.features)
            await self._record_stopped()  # never over a run that succeeded
            raise
        finally:
            await self.stream.aclose()
            await gpu_work_done()  # the slot is for GPU work, not for the client's reading
            self.pacing.close()

    def _start_features(self) -> None:
        if self.plan.collect and self.features is None:
            self.features = asyncio.create_task(self._features())

    async def _relay_tokens(self) -> None:
        """Relay the engine's events; start the feature worker with the second token, or the
        answer's end (the prompt's chunk then runs beside the rest of the answer, never beside
        the first token's prefill or its way to the client: where the SAE service shares the
        processors with the engine, the backend and the client, its forward there delayed the
        first token's arrival by ~1 ms p50 on the 2-core box; docs/backend.md)."""
        answer: GenerateResponse | None = None
        async for event in self.stream.events():
            if isinstance(event, PromptEvent):
                if self.clock is not None:
                    self.clock.mark("engine_prompt")
                self.prompt_ids = event.prompt_token_ids
                self.prompt_tokens, self.model_id = event.tokens, event.model_id
                await self._put("started", self._started(event))
            elif isinstance(event, TokenEvent):
                position = len(self.prompt_ids) + len(self.output_ids)
                self.output_ids.append(event.token_id)
                self.output_texts.append(event.text)
                token = {**event.model_dump(), "position": position}
                if self.clock is not None and len(self.output_ids) == 1:
                    self.clock.mark("engine_token")
                    self.clock.mark("queued")
                    token["timing_ms"] = self.clock.as_dict()
                await self._put("token", token)
                self.grown.set()
                if len(self.output_ids) > 1:  # not beside the first token's way out
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
                self.sae_entries = entries
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
                    self.sae.name,
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
        self.sae_asked = max(self.sae_asked, len(full))
        envelope, _ = await self.sae.extract(
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
                f"{self.sae.name} answered {len(entries)} positions from "
                f"{envelope.from_position} for positions {sent}..{len(full) - 1}",
                upstream=self.sae.name,
            )
        entries = storable_entries(entries)
        if entries:
            await self._put("features", {"entries": entries})
        return entries

    async def _finish(self, features: asyncio.Task[tuple[Extraction, float]] | None) -> None:
        extraction, sae_ms = await features if features is not None else (None, None)
        generation = self.generation
        assert generation is not None
        record = RunRecord.ok(
            request_id=self.plan.request_id,
            created_at=self.plan.created_at,
            prompt=self.req.prompt,
            generation=generation,
            extraction=extraction,
            timings=replace(self.timings, sae=sae_ms, total=elapsed_ms(self.start)),
            parse_special_tokens=self.req.parse_special_tokens,
        )
        db_ms = await self.writer.store(record)
        logger.debug("run %s: SAE work %d positions", record.request_id, self.sae_positions)
        done = replace(record, timings=replace(record.timings, db=db_ms))
        view = await asyncio.to_thread(run_view, done, self.public_base_url)  # off the loop
        view["owner_token"] = self.owner_token
        await self._put("done", view)

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
        if not self.sae_asked or self.sae_ended:
            return
        # Up to the furthest chunk asked for: one cut off in flight may have made the cache.
        full = (self.prompt_ids + self.output_ids)[: self.sae_asked]
        try:
            await asyncio.wait_for(
                self.sae.extract(
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

    async def _record_stopped(self) -> None:
        """Store the run as ``stopped``: its answer and features so far (``stopped.py``)."""
        sae = None
        if self.plan.collect:
            sae_id = self.sae_id or self.plan.sae_id
            layer = self.sae_layer if self.sae_layer is not None else self.plan.sae_layer
            sae = (self.sae.name, sae_id, layer, self.req.sae_top_k)
        partial = PartialRun(
            request_id=self.plan.request_id,
            created_at=self.plan.created_at,
            prompt=self.req.prompt,
            parse_special_tokens=self.req.parse_special_tokens,
            model_id=self.model_id,
            prompt_ids=self.prompt_ids,
            prompt_tokens=self.prompt_tokens,
            output_ids=self.output_ids,
            output_texts=self.output_texts,
            generation=self.generation,
            entries=self.sae_entries,
            sae=sae,
        )
        timings = replace(self.timings, sae=self.sae_ms or None, total=elapsed_ms(self.start))
        try:
            await self.writer.store(stopped_record(partial, timings))
        except ApiError as exc:  # a bad SAE chunk, or the database: the run is gone, say so
            logger.warning("could not record stopped run %s: %s", self.plan.request_id, exc)

    async def _record_failure(self, failure: RunFailure) -> None:
        timings = replace(self.timings, total=elapsed_ms(self.start))
        await self.writer.store_failure(self.req, self.plan, self.generation, failure, timings)

"""Dynamic batching: requests that arrive while a batch computes are gathered into the next
one, whose maths (``encode_batch.compute_batch``, pure torch) runs in a worker thread.

A stream's chunk (``EncodeJob.stream``) runs only the positions its KV cache
(``stream_cache.py``) does not hold yet; the chunks of one batch go through one padded forward
together (``stream_batch.py``), then join their SAE's encode with the rest.

"SAE work" is the number of positions run through the truncated forward: a plain job's whole
sequence, a stream chunk's new positions (its whole sequence when its cache was absent).
``Batcher.work_positions`` counts it; each result carries its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

from engine.sae.encode_batch import MAX_PADDING_RATIO, EncodeJob, EncodeResult, compute_batch
from engine.sae.registry import SaeRegistry
from engine.sae.residual import ResidualModel
from engine.sae.stream_cache import StreamCaches

logger = logging.getLogger(__name__)

# The service's batching defaults, defined once: Settings (env SAE_SERVICE_*) starts from them
# and bench/gpu_check.py runs the batcher with them.
MAX_BATCH_SIZE = 32  # requests per batch
MAX_BATCH_TOKENS = 16384  # padded tokens per forward
BATCH_WAIT_MS = 2.0  # wait after a batch's first request for simultaneous ones


class QueueFull(RuntimeError):
    """The batcher's queue is at its bound (the service answers 503 ``overloaded``)."""


class Batcher:
    """One worker task owns the model; callers ``await submit(job)``."""

    def __init__(
        self,
        model: ResidualModel,
        registry: SaeRegistry,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        wait_ms: float,
        chunk_tokens: int,
        max_padding: float = MAX_PADDING_RATIO,
        max_queued: int = 256,
        caches: StreamCaches | None = None,
    ) -> None:
        self.model, self.registry = model, registry
        self.max_queued = max_queued
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.wait_s = wait_ms / 1000
        self.chunk_tokens = chunk_tokens
        self.max_padding = max_padding
        self._queue: asyncio.Queue[EncodeJob] = asyncio.Queue()
        self._carry: collections.deque[EncodeJob] = collections.deque()
        self._task: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self.caches = caches if caches is not None else StreamCaches()
        self.batches_run = 0
        self.work_positions = 0  # SAE work: positions run through the truncated forward
        self.jobs_dropped = 0  # cancelled by their caller before their batch computed
        # Told each computed batch's positions (the metrics' histogram, engine/sae/metrics.py).
        self.on_batch: Callable[[int], None] = lambda positions: None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sae-batcher")
        self._sweeper = asyncio.create_task(self._sweep(), name="sae-stream-cache-sweep")

    async def stop(self) -> None:
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _sweep(self) -> None:
        """Stream caches idle past their bound go even when no chunk comes to sweep them."""
        while True:
            await asyncio.sleep(max(0.05, self.caches.idle_s / 4))
            self.caches.sweep()

    def queued(self) -> int:
        """Jobs waiting for a batch (cancelled ones included until the worker drops them)."""
        return self._queue.qsize() + len(self._carry)

    async def submit(self, job: EncodeJob) -> EncodeResult:
        """Queue a job and wait for it. A full queue refuses at once (503 ``overloaded``); a
        caller that goes away cancels its future, and the worker skips the job unless its
        batch is already computing."""
        if self.queued() >= self.max_queued:
            raise QueueFull(f"SAE queue full ({self.max_queued} jobs waiting); try again shortly")
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        return await job.future

    def _next_job_nowait(self) -> EncodeJob | None:
        if self._carry:
            return self._carry.popleft()
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _gather(self) -> list[EncodeJob]:
        first = self._carry.popleft() if self._carry else await self._queue.get()
        if self.wait_s:
            await asyncio.sleep(self.wait_s)  # let simultaneous requests arrive
        batch, longest = [first], len(first.token_ids)
        while len(batch) < self.max_batch_size:
            job = self._next_job_nowait()
            if job is None:
                break
            new_longest = max(longest, len(job.token_ids))
            if new_longest * (len(batch) + 1) > self.max_batch_tokens:
                self._carry.appendleft(job)
                break
            batch.append(job)
            longest = new_longest
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            live = [job for job in batch if not job.future.done()]  # skip cancelled callers
            self.jobs_dropped += len(batch) - len(live)
            if not live:
                continue
            try:
                results = await asyncio.to_thread(
                    compute_batch,
                    self.model,
                    self.registry,
                    live,
                    self.chunk_tokens,
                    self.max_padding,
                    self.caches,
                )
            except Exception as exc:  # one bad batch must not kill the worker
                logger.exception("SAE batch failed")
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches_run += 1
            positions = sum(result.work_positions for result in results)
            self.work_positions += positions
            self.on_batch(positions)
            for job, result in zip(live, results, strict=True):
                if job.future.done():
                    continue
                if result.error is not None:
                    job.future.set_exception(result.error)
                else:
                    job.future.set_result(result)

"""A streamed run's frames on their way to its client: a bounded buffer, and a client that
stops reading detached rather than waited for.

The run (the producer) never waits on its client for long: with the buffer full it waits at
most ``PLAYGROUND_CLIENT_SEND_TIMEOUT_S`` for room, then detaches the client and carries on
without it (the run finishes and is stored; later frames are dropped). The limits middleware
closes such a client's connection (backend/limits/middleware.py) and the run's GPU slot was
given back when its GPU work ended (backend/limits/slot.py), so an unread stream holds neither
memory beyond the buffer nor a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from backend.limits.slot import client_dropped
from backend.settings import Settings

logger = logging.getLogger(__name__)


class FramePacing:
    def __init__(self, settings: Settings) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(
            maxsize=settings.playground_stream_queue_frames
        )
        self._timeout = settings.playground_client_send_timeout_s
        self._closed = False
        self.detached = False

    async def put(self, frame: bytes) -> None:
        if self.detached or self._closed:
            return
        if not self._queue.full():  # the common case: room, no waiting, no timer
            self._queue.put_nowait(frame)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._queue.put(frame)
        except TimeoutError:
            self.detached = True
            logger.info("stream client read nothing for %.0f s: detached", self._timeout)

    def close(self) -> None:
        """No more frames; the reader ends after those buffered."""
        self._closed = True
        # A full buffer: the reader is not waiting; it sees the end once it has drained it.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            if self._closed and self._queue.empty():
                return
            frame = await self._queue.get()
            if frame is None:
                return
            # Whatever queued up meanwhile goes in the same write (SSE allows several events
            # per write): under load, one socket write per event was the relay's cost. The
            # first event never waits for company.
            batch, ended = [frame], False
            while not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    ended = True
                    break
                batch.append(more)
            yield batch[0] if len(batch) == 1 else b"".join(batch)
            if ended:
                return

    async def frames_of(
        self,
        produce: Callable[[], Coroutine[Any, Any, None]],
        background: set[asyncio.Task[None]],
    ) -> AsyncIterator[bytes]:
        """The frames as ``produce`` makes them (a streamed run's or a steered pair's). The run
        is its own task, held in ``background`` until it ends (a database write must outlive
        the response); closing this iterator, as the server does when the client goes,
        cancels it."""
        producer = asyncio.create_task(produce())
        background.add(producer)
        producer.add_done_callback(background.discard)
        try:
            async for frame in self.frames():
                yield frame
        finally:
            if not client_dropped():  # a departed client cancels; a dropped one does not
                producer.cancel()  # no-op when it has finished

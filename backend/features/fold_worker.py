"""The fold in the background of the backend (``fold.py`` is what it runs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from backend.features.fold import fold_batch

logger = logging.getLogger(__name__)


class FoldWorker:
    """Folds in the background of the backend. A stored run wakes it; it then waits for
    ``settle_s`` without another write (at most ``max_delay_s`` after the first), so a burst of
    runs is folded in a few batches after it rather than between its requests. It also looks
    every ``idle_s`` (other processes' writes, `playground prune`). Readers never depend on it:
    they add what is still queued."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch: int,
        idle_s: float,
        settle_s: float = 0.25,
        max_delay_s: float = 2.0,
    ) -> None:
        self.pool = pool
        self.batch = batch
        self.idle_s = idle_s
        self.settle_s = settle_s
        self.max_delay_s = max_delay_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def poke(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feature-fold")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _settle(self) -> None:
        """Return once writes paused for settle_s, or max_delay_s after the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while True:
            self._wake.clear()
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(self.settle_s, left))
            except TimeoutError:
                return

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_s)
            if self._wake.is_set():
                await self._settle()
            while True:
                try:
                    async with self.pool.acquire() as conn:
                        result = await fold_batch(conn, self.batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database may be away; try again later
                    logger.warning("feature fold failed: %s: %s", type(exc).__name__, exc)
                    break
                if result.done == 0:
                    break

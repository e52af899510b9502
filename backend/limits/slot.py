"""The GPU slot of the request being served, as a context variable, so that the work that
holds it can give it back as soon as the GPU part is over, not when the client has read the
answer (an unread stream must not hold a slot).

The limits middleware sets ``current`` for a ``gpu`` request; tasks the request starts copy the
context, so a streamed run's producer (backend/activations/streaming.py) calls
``gpu_work_done()`` when its run is stored. Release is idempotent: the middleware releases again
when the response ends, whichever comes first wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar


class Slot:
    def __init__(self, release: Callable[[], Awaitable[None]], client_key: str) -> None:
        self._release = release
        # Whose work this is: stored bytes count against this client's daily quota.
        self.client_key = client_key
        self._released = False
        # Set by the middleware when it drops a client that stopped reading: the run behind
        # the response finishes and is stored instead of being cancelled as for a departure.
        self.client_dropped = False
        # Further slots of the same request (a steered run's default: backend/limits/extra.py),
        # given back with this one.
        self._bundled: list[Slot] = []

    def bundle(self, other: Slot) -> None:
        self._bundled.append(other)

    @property
    def released(self) -> bool:
        return self._released

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        await asyncio.shield(self._release())
        for other in self._bundled:
            await other.release()


current: ContextVar[Slot | None] = ContextVar("playground_gpu_slot", default=None)


async def gpu_work_done() -> None:
    """Give back the current request's GPU slot (no-op outside a limited request)."""
    slot = current.get()
    if slot is not None:
        await slot.release()


def client_dropped() -> bool:
    """Whether the middleware dropped the current request's client for not reading."""
    slot = current.get()
    return slot is not None and slot.client_dropped


def current_client() -> str | None:
    """The limits key of the client whose GPU request is being served (None outside one)."""
    slot = current.get()
    return slot.client_key if slot is not None else None

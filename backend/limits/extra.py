"""More than one run behind one request (a steered run and its default): the middleware
admitted the request as one; each further run takes its own admission here (a rate hit and an
in-flight slot of the route's class: 429 / 503 as for a request). The slots are given back
with the request's own (backend/limits/slot.py: when the GPU work is over, not when an unread
stream is read), or when the answer is done, whichever comes first."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from backend.limits import slot
from backend.limits.limiter import Limiter, route_class


class ExtraRuns:
    def __init__(self, request: Request, count: int) -> None:
        self.request = request
        self.count = count
        self.slots: list[slot.Slot] = []

    async def __aenter__(self) -> ExtraRuns:
        limiter: Limiter | None = getattr(self.request.app.state, "limiter", None)
        klass = route_class(self.request.method, self.request.url.path)
        if limiter is None or klass is None or self.count <= 0:
            return self
        client = limiter.client_key(self.request.scope)
        try:
            for _ in range(self.count):
                taken = await limiter.admit(client, klass)
                if taken is not None:
                    self.slots.append(taken)
        except BaseException:
            await self.release()
            raise
        own = slot.current.get()
        if own is not None:
            for extra in self.slots:
                own.bundle(extra)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def release(self) -> None:
        for extra in self.slots:
            await extra.release()  # idempotent

    async def around(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``frames``, the admissions held until they end (or the client leaves)."""
        try:
            async for frame in frames:
                yield frame
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
            await self.release()

"""More than one run behind one request (a steered run and its default): the middleware
admitted the request as one; each further run takes its own admission here (a rate hit and an
in-flight slot of the route's class: 429 / 503 as for a request), held until the answer, a
streamed one included, is done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from starlette.requests import Request

from backend.limits.limiter import Limiter, route_class


class ExtraRuns:
    def __init__(self, request: Request, count: int) -> None:
        self.request = request
        self.count = count
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> ExtraRuns:
        limiter: Limiter | None = getattr(self.request.app.state, "limiter", None)
        klass = route_class(self.request.method, self.request.url.path)
        if limiter is None or klass is None or self.count <= 0:
            return self
        client = limiter.client_key(self.request.scope)
        try:
            for _ in range(self.count):
                await self.stack.enter_async_context(limiter.admit(client, klass))
        except BaseException:
            await self.stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    async def around(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``frames``, the admissions held until they end (or the client leaves)."""
        try:
            async for frame in frames:
                yield frame
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
            await self.stack.aclose()

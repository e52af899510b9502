"""Cancel a route's work when its client goes away, so that vLLM aborts the request.

Starlette does not cancel a plain (non-streaming) handler on disconnect; like vLLM's own
`with_cancellation`, we race the work against the ASGI `http.disconnect` message. The request
body must already be read (FastAPI has parsed it into the pydantic model by then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client left before the answer was ready; its engine requests were aborted."""


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work_task.cancel()
        raise
    finally:
        watch_task.cancel()
    if work_task.done():
        return work_task.result()
    # Cancelling the task cancels vLLM's generate() iterator, which aborts in the engine.
    work_task.cancel()
    await asyncio.gather(work_task, return_exceptions=True)
    raise ClientDisconnected()

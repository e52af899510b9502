"""The limits as pure ASGI middleware, in front of every route of the backend (429 / 503 with
``Retry-After`` in the one error shape; the route is not called).

A ``gpu`` request's slot is held while GPU work runs, not while the client reads: a plain
answer gives it back when its response starts (the work is over by then), a streamed run when
its run is stored (``backend.limits.slot.gpu_work_done``), the end of the response in any case.
A client that has not taken a response chunk for ``PLAYGROUND_CLIENT_SEND_TIMEOUT_S`` is
dropped (its connection closed); a streamed run behind it finishes and is stored as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.limits import slot as gpu_slot
from backend.limits.limiter import Limiter, fails_open, route_class
from backend.limits.quota import STORING_ROUTES, StorageGuard
from common.errors import ApiError, error_response
from common.timing import SCOPE_ADMITTED, SCOPE_ARRIVED

logger = logging.getLogger(__name__)


class ClientDropped(Exception):
    """The client stopped reading; its connection is closed."""


class LimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_ARRIVED] = time.perf_counter()
        klass = route_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        limiter: Limiter | None = getattr(scope["app"].state, "limiter", None) if klass else None
        if limiter is None or klass is None:
            await self.app(scope, receive, send)
            return
        client_key = limiter.client_key(scope)
        guard: StorageGuard | None = (
            getattr(scope["app"].state, "storage_guard", None)
            if (scope["method"], scope["path"]) in STORING_ROUTES
            else None
        )
        try:
            if guard is not None:
                await guard.check_size()  # 507 storage_full
            slot = await limiter.admit(
                client_key,
                klass,
                fail_open=fails_open(scope["path"]),
                daily_quota=guard.quota if guard is not None else None,  # 429 quota_exceeded
            )
        except ApiError as exc:
            metrics = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                metrics.refused(exc.code, klass)
            response = error_response(exc.status_code, exc.to_info(), headers=exc.headers)
            await response(scope, receive, send)
            return
        scope[SCOPE_ADMITTED] = time.perf_counter()
        if slot is None:
            await self.app(scope, receive, send)
            return
        token = gpu_slot.current.set(slot) if klass == "gpu" else None
        timeout = limiter.send_timeout_s

        async def paced_send(message: Message) -> None:
            if message["type"] == "http.response.start" and klass == "gpu":
                headers = dict(message.get("headers", ()))
                if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    await slot.release()  # a plain answer: the GPU work is over
            try:
                # asyncio.timeout, not wait_for: no task made per send (one per token event).
                async with asyncio.timeout(timeout):
                    await send(message)
            except TimeoutError:
                slot.client_dropped = True
                raise ClientDropped from None

        try:
            await self.app(scope, receive, paced_send)
        except BaseException as exc:
            if not _only_drops(exc):
                raise
            # Returning without completing the response makes the server close the socket.
            logger.info("dropped a client that read nothing for %.0f s", timeout)
        finally:
            if token is not None:
                gpu_slot.current.reset(token)
            await slot.release()


def _only_drops(exc: BaseException) -> bool:
    """A ClientDropped, alone or as the only content of a task group's exception group."""
    if isinstance(exc, ClientDropped):
        return True
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(ClientDropped)
        return match is not None and rest is None
    return False

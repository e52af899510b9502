"""Request body byte limit: 413 ``payload_too_large`` before anything parses the body.

A ``Content-Length`` over the limit is refused at once, unread. A body without one (chunked) is
read here up to the limit and handed on; one byte more and it is refused. Pure ASGI.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import ErrorInfo, error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = ErrorInfo(
            code="payload_too_large",
            message=f"request body over the limit of {self.max_bytes} bytes",
        )
        # The rest of the body is not read: close the connection after answering.
        response = error_response(413, info, headers={"Connection": "close"})
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
                break
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return

        # No declared length: read the body here, bounded, then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks = []
                pending: list[Message] = [message]
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def limit_body(app, max_bytes: int) -> None:
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)

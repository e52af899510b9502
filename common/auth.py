"""Service auth: a bearer token shared by the backend and the model services.

When a token is configured, every route but ``/health`` needs ``Authorization: Bearer <token>``;
anything else answers 401 ``unauthorized`` before the app sees the request. ``/health`` without
the token answers only its status (``{"status": "ok"|"down"}``, same code). Pure ASGI (no
response buffering), compared with ``secrets.compare_digest``.
"""

from __future__ import annotations

import os
import secrets

from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import ErrorInfo, error_response

EXEMPT_PATHS = frozenset({"/health"})
# Set (to 1) by modal_deploy.py in every deployed image: the services fail closed there.
DEPLOYED_ENV = "PLAYGROUND_DEPLOYED"


def checked_token(token: SecretStr | None, *, env_name: str, deployed: bool) -> SecretStr | None:
    """A service token setting, failing closed: an empty or blank value is an error, not
    "unset" (the settings ignore empty variables, so the variable itself is looked at too), and
    a deployed service (``PLAYGROUND_DEPLOYED``) refuses to start without one."""
    raw = os.environ.get(env_name)
    if (token is not None and not token.get_secret_value().strip()) or (
        token is None and raw is not None and not raw.strip()
    ):
        raise ValueError(f"{env_name} is set but empty: set a token, or unset it locally")
    if deployed and token is None:
        raise ValueError(f"{env_name} is required where {DEPLOYED_ENV} is set (no auth, no start)")
    return token


def bearer_header(token: SecretStr | None) -> dict[str, str]:
    """The header a client sends (empty when no token is configured)."""
    if token is None or not token.get_secret_value():
        return {}
    return {"authorization": f"Bearer {token.get_secret_value()}"}


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, *, token: SecretStr) -> None:
        self.app = app
        self._expected = f"Bearer {token.get_secret_value()}".encode()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return secrets.compare_digest(value, self._expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["path"] in EXEMPT_PATHS:
            await self._bare_health(scope, receive, send)
            return
        info = ErrorInfo(code="unauthorized", message="missing or wrong service token")
        response = error_response(401, info, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    async def _bare_health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/health`` without the token: its status code and ``{"status": "ok"|"down"}``
        only; model paths, devices and queue counters are for the token's holders."""
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, capture)
        body = {"status": "ok" if status < 400 else "down"}
        await JSONResponse(body, status_code=status)(scope, receive, send)


def require_token(app, token: SecretStr | None) -> None:
    """Install the middleware on a FastAPI app when a non-empty token is configured."""
    if token is not None and token.get_secret_value():
        app.add_middleware(BearerTokenMiddleware, token=token)

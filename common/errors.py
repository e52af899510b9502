"""The one error shape every service answers with, and the exception -> status mapping.

Body: ``{"error": {"code": "<snake_case>", "message": "...", "upstream": "<name>|null"}}``
(contracts.md), plus ``details`` for validation errors.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.responses import OrjsonResponse

logger = logging.getLogger(__name__)


class ErrorInfo(BaseModel):
    code: str
    message: str
    upstream: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class ApiError(Exception):
    """Base for every error a route may raise; subclasses fix status and code."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        upstream: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.upstream = upstream
        self.details = details
        self.headers = headers

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code, message=self.message, upstream=self.upstream, details=self.details
        )


class InvalidRequest(ApiError):
    status_code = 422
    code = "invalid_request"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Gone(ApiError):
    status_code = 410
    code = "gone"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class Unauthorized(ApiError):
    """The service token is missing or wrong."""

    status_code = 401
    code = "unauthorized"


class RunOwned(Conflict):
    """The request_id belongs to another owner (no or a wrong ``X-Run-Owner``)."""

    code = "run_owned"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class _RetryLater(ApiError):
    """An error that tells the client when to try again (``Retry-After``, whole seconds)."""

    def __init__(self, message: str, *, retry_after_s: float, **kwargs: Any) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(message, headers={"Retry-After": str(seconds)}, **kwargs)
        self.retry_after_s = seconds


class RateLimited(_RetryLater):
    """This client is over its request rate or concurrency limit."""

    status_code = 429
    code = "rate_limited"


class Overloaded(_RetryLater):
    """The service (or the deployment's GPU ceiling) is full; nothing was started."""

    status_code = 503
    code = "overloaded"


class NotImplementedYet(ApiError):
    status_code = 501
    code = "not_implemented"


class ServiceUnavailable(ApiError):
    """A dependency we own (Postgres, the model) is not available."""

    status_code = 503
    code = "service_unavailable"


class UpstreamError(ApiError):
    """An upstream HTTP service failed: 5xx, refused connection, or an answer we cannot parse."""

    status_code = 502
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


def error_response(status_code: int, info: ErrorInfo, headers: dict[str, str] | None = None):
    return OrjsonResponse(
        ErrorResponse(error=info).model_dump(exclude_none=True),
        status_code=status_code,
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        details.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return details


def _count(request: Request, code: str) -> None:
    """Tell the app's error counter (common/metrics.py) when it has one."""
    count = getattr(request.app.state, "count_error", None)
    if count is not None:
        count(request, code)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that make every failure answer with :class:`ErrorResponse`
    (FastAPI's decorator: its typing accepts handlers of a narrower exception type)."""

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        _count(request, exc.code)
        if exc.status_code >= 500:
            logger.warning("%s: %s (upstream=%s)", exc.code, exc.message, exc.upstream)
        return error_response(exc.status_code, exc.to_info(), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        _count(request, "validation_error")
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
        message = f"{where}: {first['msg']}" if where else first["msg"]
        info = ErrorInfo(code="validation_error", message=message, details=details)
        return error_response(422, info)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        _count(request, code)
        info = ErrorInfo(code=code, message=str(exc.detail))
        return error_response(exc.status_code, info, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        _count(request, "internal_error")
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, ErrorInfo(code="internal_error", message="internal error"))


# For routes' ``responses=`` so the OpenAPI schema documents the error body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (404, 410, 422, 501, 502, 503, 504)
}

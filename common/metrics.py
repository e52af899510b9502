"""Prometheus metrics shared by the three services: a registry per app (made by the app
factory, never at import), prometheus-fastapi-instrumentator's HTTP metrics, errors by route and
code, and ``GET /metrics`` rendered by ``prometheus_client``.

Labels stay low-cardinality: route templates (``/playground/activations/{request_id}``, never
the path), error codes, outcomes and stages; never an id, a prompt or a feature.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import SecretStr

from common.errors import ErrorInfo, error_response

METRICS_PATH = "/metrics"
# Not timed: the scrape itself and the liveness probe.
EXCLUDED_HANDLERS = [METRICS_PATH, "/health"]
_CODE = re.compile(r"[a-z0-9_]{1,48}")
Refresh = Callable[[FastAPI], Awaitable[None]]


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A fresh registry; with ``process``, the process/platform/GC metrics the default registry
    would have had (the engine leaves them out: it forwards the default registry instead)."""
    registry = CollectorRegistry(auto_describe=True)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class DefaultRegistry(Collector):
    """Forwards what lives in prometheus_client's default registry (vLLM's ``vllm:*`` metrics
    and the process metrics) into an app's registry."""

    def collect(self) -> Iterable:
        return REGISTRY.collect()

    def describe(self) -> Iterable:
        return ()


def route_label(scope) -> str:
    """The matched route's template, or ``unmatched`` (a 404 never mints a label)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class HttpMetrics:
    """What every service counts beyond the instrumentator: its error answers by route and
    the error shape's ``code``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.errors = Counter(
            "playground_http_errors",
            "Error answers (the one error shape) by route template and error code.",
            ["route", "code"],
            registry=registry,
        )

    def count_error(self, request: Request, code: str) -> None:
        self.errors.labels(
            route_label(request.scope), code if _CODE.fullmatch(code) else "other"
        ).inc()


def instrument(app: FastAPI, registry: CollectorRegistry) -> HttpMetrics:
    """HTTP request metrics (``http_requests_total{handler,method,status}``,
    ``http_request_duration_seconds``, sizes) and the error counter, on ``registry``."""
    Instrumentator(
        registry=registry,
        excluded_handlers=EXCLUDED_HANDLERS,
        should_group_status_codes=False,
        should_ignore_untemplated=False,
        should_group_untemplated=True,
    ).instrument(app)
    http = HttpMetrics(registry)
    app.state.count_error = http.count_error
    return http


def _authorized(request: Request, token: SecretStr | None) -> bool:
    if token is None or not token.get_secret_value():
        return True
    given = request.headers.get("authorization", "").encode()
    return secrets.compare_digest(given, f"Bearer {token.get_secret_value()}".encode())


def add_metrics_route(
    app: FastAPI,
    registry: CollectorRegistry,
    *,
    token: SecretStr | None = None,
    refresh: Refresh | None = None,
) -> None:
    """``GET /metrics``: the registry in Prometheus' text format. With ``token``, 401 without
    ``Authorization: Bearer <token>`` (the engine and SAE service already guard every route but
    /health with their service token). ``refresh`` updates gauges read at scrape time."""

    async def metrics(request: Request) -> Response:
        if not _authorized(request, token):
            info = ErrorInfo(code="unauthorized", message="missing or wrong metrics token")
            return error_response(401, info, headers={"WWW-Authenticate": "Bearer"})
        if refresh is not None:
            await refresh(request.app)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)

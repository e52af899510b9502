"""One JSON-over-HTTP client for every upstream, with one mapping of failures to errors.

Connection refused -> 503 upstream_unavailable; past the timeout -> 504 upstream_timeout;
5xx, garbage or a wrong shape -> 502 upstream_error; a 4xx about the caller's input -> 422.
Every error names the upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import TypeAdapter, ValidationError

from common import sse
from common.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from common.request_id import propagate

T = TypeVar("T")

# Upstream 4xx that mean "your input is wrong" rather than "we called it wrongly".
_CALLER_ERRORS = {400, 404, 422}
# Upstream error codes the caller sees as they are (the upstream's word is the clearest);
# any other caller error is ``upstream_rejected``.
PASSED_CODES = frozenset({"steering_unavailable"})


def new_http_client(
    base_url: str,
    *,
    timeout: float,
    connect_timeout: float,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """``headers`` go with every request (the service token and Modal's proxy auth), and so
    does the calling request's ``X-Request-ID``."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers=headers,
        event_hooks={"request": [propagate]},
    )


def _upstream_error(response: httpx.Response) -> tuple[str | None, str]:
    """The upstream's own error code and message when it speaks our error shape, else
    (None, a snippet)."""
    try:
        body = orjson.loads(response.content)
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                code = error.get("code")
                return (code if isinstance(code, str) else None), error["message"]
            if isinstance(body.get("detail"), str):
                return None, body["detail"]
    except orjson.JSONDecodeError:
        pass
    return None, response.text[:200]


def raise_for_status(name: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    code, message = _upstream_error(response)
    if response.status_code in _CALLER_ERRORS:
        raise InvalidRequest(
            f"{name} rejected the request ({response.status_code}): {message}",
            code=code if code in PASSED_CODES else "upstream_rejected",
            upstream=name,
        )
    raise UpstreamError(f"{name} answered {response.status_code}: {message}", upstream=name)


@asynccontextmanager
async def transport_errors(name: str) -> AsyncIterator[None]:
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise UpstreamUnavailable(f"{name} unreachable (connect timeout)", upstream=name) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{name} timed out ({type(exc).__name__})", upstream=name) from exc
    except httpx.ConnectError as exc:
        raise UpstreamUnavailable(f"{name} unreachable: {exc}", upstream=name) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{name} failed: {type(exc).__name__}: {exc}", upstream=name) from exc


class JsonUpstream:
    """A named upstream: JSON requests in, validated JSON out."""

    def __init__(self, name: str, http: httpx.AsyncClient) -> None:
        self.name = name
        self.http = http

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send; return the parsed JSON body (any shape). ``missing_ok``: a 404 answers None
        (an optional resource, or a route an older upstream does not have)."""
        content = orjson.dumps(json) if json is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        async with transport_errors(self.name):
            response = await self.http.request(method, path, content=content, headers=headers)
        if missing_ok and response.status_code == 404:
            return None
        raise_for_status(self.name, response)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"{self.name} answered with invalid JSON: {response.text[:100]!r}",
                upstream=self.name,
            ) from exc

    async def call(
        self,
        method: str,
        path: str,
        adapter: TypeAdapter[T],
        *,
        json: Any = None,
    ) -> tuple[T, Any]:
        """Send; validate the body against ``adapter``; return (model, raw parsed body)."""
        raw = await self.request(method, path, json=json)
        return self.validate(adapter, raw), raw

    async def call_optional(self, method: str, path: str, adapter: TypeAdapter[T]) -> T | None:
        """As ``call``, for a resource that may be missing: None on 404."""
        raw = await self.request(method, path, missing_ok=True)
        return None if raw is None else self.validate(adapter, raw)

    def validate(self, adapter: TypeAdapter[T], raw: Any) -> T:
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UpstreamError(
                f"{self.name} answered an unexpected shape: {where}: {first['msg']}",
                upstream=self.name,
            ) from exc

    async def health(self) -> None:
        """GET /health; raises the mapped error unless it answers 2xx."""
        async with transport_errors(self.name):
            response = await self.http.get("/health")
        raise_for_status(self.name, response)


class EventStream:
    """An upstream's open Server-Sent Events answer (status already checked). Close it to end
    the upstream's work: the connection goes, and the upstream sees its client leave."""

    def __init__(self, name: str, response: httpx.Response) -> None:
        self.name = name
        self.response = response

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        async with transport_errors(self.name):
            try:
                async for event in sse.aparse(self.response.aiter_lines()):
                    yield event
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(
                    f"{self.name} sent an event that is not JSON", upstream=self.name
                ) from exc

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_event_stream(upstream: JsonUpstream, path: str, *, json: Any) -> EventStream:
    """POST ``json`` and return the open event stream; the upstream's plain HTTP errors (known
    before it streams) raise here, mapped as for any JSON call."""
    request = upstream.http.build_request(
        "POST",
        path,
        content=orjson.dumps(json),
        headers={"content-type": "application/json", "accept": sse.MEDIA_TYPE},
    )
    async with transport_errors(upstream.name):
        response = await upstream.http.send(request, stream=True)
    if response.status_code >= 400:
        async with transport_errors(upstream.name):
            await response.aread()
        await response.aclose()
        raise_for_status(upstream.name, response)
    return EventStream(upstream.name, response)

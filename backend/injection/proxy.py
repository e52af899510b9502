"""The injection playground's proxy: model key -> MAX OpenAI-compatible server and model name.

Kept exactly as the Rust backend had it: ``llama-3.1-8b`` is served by PLAYGROUND_LLAMA_8B_URL
as ``modularai/Llama-3.1-8B-Instruct-GGUF``; ``qwen-14b`` by PLAYGROUND_QWEN_14B_URL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
from fastapi.responses import Response, StreamingResponse

from backend.injection.caps import InjectionCaps
from backend.injection.protocol import ChatCompletionRequest
from backend.settings import Settings
from backend.upstreams.client import raise_for_status, transport_errors
from common.errors import InvalidRequest, UpstreamError, UpstreamUnavailable

logger = logging.getLogger(__name__)

LLAMA_8B_UPSTREAM_MODEL = "modularai/Llama-3.1-8B-Instruct-GGUF"


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    base_url: str | None
    upstream_model: str


def targets(settings: Settings) -> dict[str, Target]:
    return {
        "llama-3.1-8b": Target(
            "llama-3.1-8b", settings.playground_llama_8b_url, LLAMA_8B_UPSTREAM_MODEL
        ),
        "qwen-14b": Target(
            "qwen-14b", settings.playground_qwen_14b_url, settings.playground_qwen_14b_model
        ),
    }


def _chat_path(base_url: str) -> str:
    return "/chat/completions" if base_url.endswith("/v1") else "/v1/chat/completions"


def key_may_go_to(base_url: str) -> bool:
    """The admin key travels only encrypted, or not off this machine: https, or loopback."""
    url = httpx.URL(base_url)
    if url.scheme == "https":
        return True
    host = url.host
    return url.scheme == "http" and (
        host in ("localhost", "::1") or host.startswith("127.") or host == "[::1]"
    )


# Upstream response headers relayed with a streamed body (its bytes are relayed as they are).
_RELAYED_HEADERS = ("content-encoding",)


class InjectionProxy:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.targets = targets(settings)
        self.http = http
        self.caps = InjectionCaps.from_settings(settings)
        self._admin_key = settings.playground_admin_key
        for target in self.targets.values():
            if self._admin_key and target.base_url and not key_may_go_to(target.base_url):
                logger.warning(
                    "%s: plain-http URL that is not loopback; PLAYGROUND_ADMIN_KEY is not sent",
                    target.key,
                )

    def _headers(self, base_url: str) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._admin_key and key_may_go_to(base_url):
            headers["authorization"] = f"Bearer {self._admin_key.get_secret_value()}"
        return headers

    async def chat(self, req: ChatCompletionRequest) -> Response:
        target = self.targets[req.model]
        name = target.key
        if not target.base_url:
            raise UpstreamUnavailable(f"{name}: its server URL is not configured", upstream=name)
        payload = {**req.model_dump(exclude_unset=True), "model": target.upstream_model}
        payload = self.caps.apply(req, payload)
        if req.stream:
            payload["stream"] = True
        headers = self._headers(target.base_url)
        try:
            content = orjson.dumps(payload)
        except (
            orjson.JSONEncodeError
        ) as exc:  # e.g. an integer past 64 bits in a passed-through field
            raise InvalidRequest(f"body cannot be forwarded as JSON: {exc}") from exc
        request = self.http.build_request(
            "POST", target.base_url + _chat_path(target.base_url), content=content, headers=headers
        )
        async with transport_errors(name):
            response = await self.http.send(request, stream=True)
        if response.status_code >= 400 or not req.stream:
            try:
                async with transport_errors(name):
                    await response.aread()
            finally:
                await response.aclose()
            raise_for_status(name, response)
            try:
                orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(f"{name} answered invalid JSON", upstream=name) from exc
            return Response(
                response.content, status_code=response.status_code, media_type="application/json"
            )
        relayed = {k: response.headers[k] for k in _RELAYED_HEADERS if k in response.headers}
        return StreamingResponse(
            _relay(name, response),
            status_code=response.status_code,
            media_type=response.headers.get("content-type", "text/event-stream"),
            headers={"cache-control": "no-cache", **relayed},
        )


async def _relay(name: str, response: httpx.Response) -> AsyncIterator[bytes]:
    """Pass the upstream's bytes through as they arrive, still encoded (SSE chunks stay intact;
    the Content-Encoding header goes with them)."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        # Headers are sent already: all we can do is end the stream and say why in the log.
        logger.warning("%s stream broke: %s: %s", name, type(exc).__name__, exc)
    finally:
        await response.aclose()

"""Caps on what an injection request may make a MAX server do.

Every field that drives cost is held to a configured cap (over one: 422, nothing forwarded):
``max_tokens``/``max_completion_tokens``, ``min_tokens``, ``n``, ``best_of``, ``ignore_eos``,
the message count and the messages' total size. The injection playground's own extension fields
pass through untouched. The one change to a forwarded body: a request that sets neither
``max_tokens`` nor ``max_completion_tokens`` gets the configured default ``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from backend.injection.protocol import ChatCompletionRequest
from backend.settings import Settings
from common.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class InjectionCaps:
    default_max_tokens: int
    max_tokens: int
    max_n: int
    max_messages: int
    max_message_chars: int
    allow_ignore_eos: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> InjectionCaps:
        return cls(
            default_max_tokens=min(
                settings.playground_injection_default_max_tokens,
                settings.playground_injection_max_tokens,
            ),
            max_tokens=settings.playground_injection_max_tokens,
            max_n=settings.playground_injection_max_n,
            max_messages=settings.playground_injection_max_messages,
            max_message_chars=settings.playground_injection_max_message_chars,
            allow_ignore_eos=settings.playground_injection_allow_ignore_eos,
        )

    def apply(self, req: ChatCompletionRequest, payload: dict[str, Any]) -> dict[str, Any]:
        """Check ``req`` against the caps; return the body to forward (``payload`` plus the
        default max_tokens when none was set)."""
        if len(req.messages) > self.max_messages:
            _over("messages", f"at most {self.max_messages} messages")
        chars = sum(_content_chars(m.content) for m in req.messages)
        if chars > self.max_message_chars:
            _over("messages", f"at most {self.max_message_chars} characters of content in all")
        for name in ("max_tokens", "max_completion_tokens"):
            value = getattr(req, name)
            if value is not None and value > self.max_tokens:
                _over(name, f"at most {self.max_tokens}")
        ceiling = req.max_tokens or req.max_completion_tokens or self.default_max_tokens
        if req.min_tokens is not None and req.min_tokens > ceiling:
            _over("min_tokens", f"at most max_tokens ({ceiling})")
        for name in ("n", "best_of"):
            value = getattr(req, name)
            if value is not None and value > self.max_n:
                _over(name, f"at most {self.max_n}")
        if req.ignore_eos and not self.allow_ignore_eos:
            _over("ignore_eos", "not allowed on this deployment")
        if req.max_tokens is None and req.max_completion_tokens is None:
            return {**payload, "max_tokens": self.default_max_tokens}
        return payload


def _content_chars(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    try:
        return len(orjson.dumps(content))
    except orjson.JSONEncodeError as exc:  # e.g. an integer past 64 bits, as the proxy's own
        raise InvalidRequest(f"body cannot be forwarded as JSON: {exc}") from exc


def _over(field: str, bound: str) -> None:
    raise InvalidRequest(f"{field}: {bound}", code="over_cap")

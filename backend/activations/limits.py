"""The bounds of a run request, in one place: the page shows them (its form reads them from
the page's config), checks them before sending, and the API's 422 names the same numbers.

The static bounds are the request model's own (``protocol.ActivationRunRequest``); the prompt's
length and ``max_tokens`` are the deployment's (``PLAYGROUND_MAX_PROMPT_CHARS``,
``PLAYGROUND_MAX_TOKENS``), checked here before anything else happens to the run.
"""

from __future__ import annotations

from typing import Any

from annotated_types import Ge, Gt, Le, MaxLen, MinLen

from backend.activations.protocol import ActivationRunRequest
from backend.settings import Settings
from common.errors import InvalidRequest

# Fields whose bounds come from the request model as they are.
_STATIC_FIELDS = ("temperature", "top_p", "top_k", "sae_top_k")


def _model_bounds(field: str) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in ActivationRunRequest.model_fields[field].metadata:
        if isinstance(item, Ge):
            bounds["min"] = item.ge
        elif isinstance(item, Gt):
            bounds["min"], bounds["min_exclusive"] = item.gt, True
        elif isinstance(item, Le):
            bounds["max"] = item.le
        elif isinstance(item, MinLen):
            bounds["min_length"] = item.min_length
        elif isinstance(item, MaxLen):
            bounds["max_length"] = item.max_length
    return bounds


def run_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every bound of a run request the page shows, by field name."""
    limits = {name: _model_bounds(name) for name in _STATIC_FIELDS}
    limits["prompt"] = {"min_length": 1, "max_length": settings.playground_max_prompt_chars}
    limits["max_tokens"] = {"min": 1, "max": settings.playground_max_tokens}
    return limits


def check_run_limits(req: ActivationRunRequest, settings: Settings) -> None:
    """422 ``invalid_request`` naming every deployment bound the request breaks (the model
    already refused what breaks its static ones)."""
    problems = []
    if len(req.prompt) > settings.playground_max_prompt_chars:
        problems.append(("prompt", f"at most {settings.playground_max_prompt_chars} characters"))
    if req.max_tokens > settings.playground_max_tokens:
        problems.append(("max_tokens", f"at most {settings.playground_max_tokens}"))
    if problems:
        details = [{"loc": ["body", field], "msg": msg, "type": "limit"} for field, msg in problems]
        raise InvalidRequest(
            "; ".join(f"{field}: {msg}" for field, msg in problems), details=details
        )

"""Stub answers held to the real services' wire models, so that a stub cannot drift.

Every answer a stub upstream (tests/backend/stubs.py) gives on the contract goes through
``conforming``: it must validate against the real service's own pydantic response model
(engine/generation/protocol.py, engine/sae/protocol.py, common/errors.py) *and* come back unchanged
from a validate -> dump round trip, which the models alone would not give: they ignore unknown
keys (a stub's ``argmax`` beside a missing ``argmax_position`` would pass if the field had a
default) and fill defaults the real service always sends.

A drift raises ``ContractDrift``; the stubs record it on their state and answer 500, and the
backend tests' autouse fixture fails the test that met it, naming the route and the difference.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


class ContractDrift(AssertionError):
    """A stub answered something the real service never would."""


def _differences(got: Any, want: Any, path: str = "$") -> list[str]:
    if isinstance(got, dict) and isinstance(want, dict):
        out = [f"{path}.{k}: not in the real model" for k in got.keys() - want.keys()]
        out += [
            f"{path}.{k}: missing (the real service sends it)" for k in want.keys() - got.keys()
        ]
        for key in got.keys() & want.keys():
            out += _differences(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, {len(want)} after the round trip"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in _differences(g, w, f"{path}[{i}]")]  # fmt: skip
    if got != want or isinstance(got, bool) != isinstance(want, bool):
        return [f"{path}: {got!r} becomes {want!r}"]
    return []


def conforming(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """``body`` unchanged if the real service could have sent it as ``model``; else raises."""
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        raise ContractDrift(f"{model.__module__}.{model.__name__}: {exc}") from exc
    # JSON keys are strings: a dict[int, str] field comes back with string keys, as sent.
    differences = _differences(body, parsed.model_dump(mode="json"))
    if differences:
        raise ContractDrift(f"{model.__module__}.{model.__name__}: " + "; ".join(differences))
    return body

"""A stored run's place in a steering pair, as its reads answer it (``pair``, ``steering``)."""

from __future__ import annotations

import asyncpg
import orjson

from backend.activations.results import RunView


def with_pair(view: RunView, pair: asyncpg.Record | None) -> RunView:
    """``view`` with its pair (the other run's id, this run's role) and the pair's steering
    spec; unchanged for a run outside any pair."""
    if pair is None:
        return view
    view["steering"] = orjson.loads(pair["steering"]) if pair["steering"] else None
    if pair["role"] == "default" or pair["pair_request_id"] is not None:
        view["pair"] = {"request_id": pair["pair_request_id"], "role": pair["role"]}
    return view

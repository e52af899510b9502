"""bench.backend's cases for comparing two runs and exporting one (issue 23).

The compared pair: the big run and a second run of the same prompt (the same tokens and
features on its first half) with a different answer of the same length (other tokens, other
features): what a re-run or a steered run looks like. The export is the big run as CSV; its
figure is also given as MB/s (body size / p50).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg

from backend.activations import storage
from backend.db import queries

PAIR_ID = "bench-big-b"


async def seed_pair(
    conn: asyncpg.Connection,
    now: datetime,
    positions: int,
    top_k: int,
    make_timeline: Callable[..., list[dict]],
    run_record: Callable[..., object],
) -> None:
    half = positions // 2
    timeline = make_timeline(positions, top_k, half, seed=2)  # the big run's own
    other = make_timeline(positions, top_k, half, seed=4)
    for entry in other[half:]:
        entry["token_id"] = 7000 + (entry["position"] * 7919) % 3000
        entry["token"] = f" other{entry['position']}"
    record = run_record(PAIR_ID, now, timeline[:half] + other[half:], half)
    await queries.copy_runs(conn, [storage.index_row(record)], [storage.preview_row(record)])


def cases(big_id: str) -> dict[str, tuple[str, str, dict]]:
    base = "/playground/activations"
    return {
        "compare": ("GET", f"{base}/compare", {"params": {"a": big_id, "b": PAIR_ID}}),
        "export_csv": ("GET", f"{base}/{big_id}/export", {"params": {"format": "csv"}}),
        "export_json": ("GET", f"{base}/{big_id}/export", {"params": {"format": "json"}}),
    }


def add_throughput(results: dict, responses: dict[str, list]) -> None:
    """MB/s of each export (its body size over its p50)."""
    for name in ("export_csv", "export_json"):
        size = len(responses[name][-1].content)
        results[name]["bytes"] = size
        results[name]["mb_per_s"] = round(size / 1e6 / (results[name]["p50_ms"] / 1000), 1)

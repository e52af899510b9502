"""Brute-force references for the feature explorer, computed straight from the stored JSON
timelines (the source of truth) with plain loops: nothing shared with the code under test but
the histogram's bin edges."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import orjson

from backend.activations.aggregate import HIST_EDGES, N_BINS


@dataclass
class StoredRun:
    request_id: str
    sae_id: str
    layer: int
    timeline: list[dict]


async def stored_runs(conn: asyncpg.Connection) -> list[StoredRun]:
    rows = await conn.fetch(
        "SELECT request_id, sae_id, sae_layer, feature_timeline::text AS tl "
        "FROM activation_run_previews WHERE sae_id IS NOT NULL"
    )
    return [
        StoredRun(r["request_id"], r["sae_id"], r["sae_layer"], orjson.loads(r["tl"])) for r in rows
    ]


def bin_of(act: float) -> int:
    return min(max(bisect.bisect_right(HIST_EDGES, act) - 1, 0), N_BINS - 1)


@dataclass
class Expected:
    runs_fired: int = 0
    runs_total: int = 0
    positions_fired: int = 0
    positions_total: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * N_BINS)
    # (max as float32, request_id, earliest position of the max), best first
    ranked: list[tuple[float, str, int]] = field(default_factory=list)


def expected(runs: list[StoredRun], sae_id: str, layer: int, feature_id: int) -> Expected:
    out = Expected()
    for run in runs:
        if (run.sae_id, run.layer) != (sae_id, layer):
            continue
        out.runs_total += 1
        best: tuple[float, int] | None = None
        for entry in run.timeline:
            if entry.get("special"):
                continue
            out.positions_total += 1
            for feat in entry["features"]:
                if feat["feature_id"] != feature_id:
                    continue
                act = float(feat["activation"])
                out.positions_fired += 1
                out.hist[bin_of(act)] += 1
                if best is None or act > best[0]:
                    best = (act, entry["position"])
        if best is not None:
            out.runs_fired += 1
            out.ranked.append((float(np.float32(best[0])), run.request_id, best[1]))
    out.ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return out


def fired_features(runs: list[StoredRun]) -> set[int]:
    return {
        f["feature_id"]
        for run in runs
        for entry in run.timeline
        if not entry.get("special")
        for f in entry["features"]
    }

"""Runs for the comparison and export tests, written straight to the real Postgres through the
run path's own row builders (``storage.rows``, ``queries.save_run``), so each test chooses its
tokens and features exactly; and brute-force references computed from the stored JSON
timelines with plain loops (nothing shared with the code under test)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from backend.activations import packed, storage
from backend.activations.record import Extraction, Generation, RunFailure, RunRecord, RunTimings
from backend.db import queries

SAE_ID, LAYER = "llama_scope_lxr_8x", 16
BOS = 128000
# Token texts that CSV must quote: commas, quotes, line breaks, leading spaces, empty.
WORDS = [" the", " sky", ",", ' "blue"', "\n", "a,b", " why", "", "\r\n", " sea", "'", " ;"]


def token_text(token_id: int) -> str:
    return "<|begin_of_text|>" if token_id == BOS else WORDS[token_id % len(WORDS)]


def entry(position: int, token_id: int, segment: str, features: list[tuple[int, float]]) -> dict:
    ordered = sorted(features, key=lambda f: -f[1])
    return {
        "position": position,
        "token_id": token_id,
        "token": token_text(token_id),
        "segment": segment,
        "special": token_id == BOS,
        "features": [{"feature_id": f, "activation": a} for f, a in ordered],
    }


def random_features(rng: random.Random, pool: range, top_k: int) -> list[tuple[int, float]]:
    ids = rng.sample(pool, rng.randint(0, top_k))
    # One decimal place: equal values happen, so ties in the ordering are exercised.
    return [(f, round(rng.uniform(0.1, 9.0), 1)) for f in ids]


def timeline(
    token_ids: list[int],
    output_start: int,
    *,
    seed: int,
    pool: range = range(40),
    top_k: int = 6,
) -> list[dict]:
    rng = random.Random(seed)
    return [
        entry(p, t, "prompt" if p < output_start else "output", random_features(rng, pool, top_k))
        for p, t in enumerate(token_ids)
    ]


@dataclass(frozen=True)
class Seeded:
    request_id: str
    entries: list[dict]
    output_start: int


async def seed(
    db: asyncpg.Connection,
    request_id: str,
    entries: list[dict],
    output_start: int,
    *,
    sae: tuple[str, int] = (SAE_ID, LAYER),
    age: timedelta = timedelta(0),
) -> Seeded:
    tl, tokens = packed.from_entries(entries)
    ids = [e["token_id"] for e in entries]
    record = RunRecord(
        request_id=request_id,
        created_at=datetime.now(UTC) - age,
        model_id="test-model",
        prompt=f"prompt of {request_id}",
        status="ok",
        generation=Generation(
            model_id="test-model",
            output_text="".join(tokens[output_start:]),
            output_token_ids=ids[output_start:],
            prompt_token_ids=ids[:output_start],
            finish_reason="stop",
        ),
        extraction=Extraction(
            sae_id=sae[0],
            sae_layer=sae[1],
            sae_top_k=max((len(e["features"]) for e in entries), default=1) or 1,
            timeline=tl,
            tokens=tokens,
            timeline_json=orjson.dumps(entries),
        ),
        failure=None,
        timings=RunTimings(engine=1.0, sae=1.0, total=3.0),
    )
    rows = storage.rows(record)
    await queries.save_run(db, rows.index, rows.preview, rows.features)
    return Seeded(request_id, entries, output_start)


async def seed_failed(db: asyncpg.Connection, request_id: str) -> None:
    record = RunRecord(
        request_id=request_id,
        created_at=datetime.now(UTC),
        model_id="test-model",
        prompt="a failed prompt",
        status="failed",
        generation=None,
        extraction=None,
        failure=RunFailure("upstream_error", "the engine broke", "engine"),
        timings=RunTimings(),
    )
    rows = storage.rows(record)
    await queries.save_run(db, rows.index, rows.preview, rows.features)


async def stored_timeline(db: asyncpg.Connection, request_id: str) -> list[dict]:
    text = await db.fetchval(
        "SELECT feature_timeline::text FROM activation_run_previews WHERE request_id = $1",
        request_id,
    )
    return orjson.loads(text)


# -- brute force -----------------------------------------------------------------------------


def counted(entry: dict, segment: str, include_special: bool) -> bool:
    if entry["special"] and not include_special:
        return False
    return segment == "all" or entry["segment"] == segment


def per_feature(entries: list[dict], segment: str, include_special: bool) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for e in entries:
        if not counted(e, segment, include_special):
            continue
        for f in e["features"]:
            s = out.setdefault(f["feature_id"], {"max": 0.0, "sum": 0.0, "hits": 0})
            s["max"] = (
                max(s["max"], float(f["activation"])) if s["hits"] else float(f["activation"])
            )
            s["sum"] += float(f["activation"])
            s["hits"] += 1
    return out


def expected_features(
    a: list[dict], b: list[dict], segment: str = "all", include_special: bool = False
) -> dict[int, dict]:
    """feature id -> {a: {max, mean, hits}, b: {...}, delta_max, delta_mean}."""
    fa, fb = per_feature(a, segment, include_special), per_feature(b, segment, include_special)
    zero = {"max": 0.0, "sum": 0.0, "hits": 0}
    out = {}
    for fid in set(fa) | set(fb):
        sa, sb = fa.get(fid, zero), fb.get(fid, zero)
        side_a = {"max": sa["max"], "mean": sa["sum"] / sa["hits"] if sa["hits"] else 0.0,
                  "hits": sa["hits"]}  # fmt: skip
        side_b = {"max": sb["max"], "mean": sb["sum"] / sb["hits"] if sb["hits"] else 0.0,
                  "hits": sb["hits"]}  # fmt: skip
        out[fid] = {
            "a": side_a,
            "b": side_b,
            "delta_max": side_b["max"] - side_a["max"],
            "delta_mean": side_b["mean"] - side_a["mean"],
        }
    return out


def expected_changes(
    a: list[dict], b: list[dict], pairs: list[tuple[int, int]], threshold: float
) -> list[dict]:
    """The per-position changes at aligned ``pairs`` (a position, b position)."""
    out = []
    for pa, pb in pairs:
        fa = {f["feature_id"]: f["activation"] for f in a[pa]["features"]}
        fb = {f["feature_id"]: f["activation"] for f in b[pb]["features"]}
        appeared = [{"feature_id": f, "activation": fb[f]} for f in sorted(set(fb) - set(fa))]
        vanished = [{"feature_id": f, "activation": fa[f]} for f in sorted(set(fa) - set(fb))]
        changed = [
            {"feature_id": f, "a": fa[f], "b": fb[f]}
            for f in sorted(set(fa) & set(fb))
            if abs(fb[f] - fa[f]) > threshold
        ]
        if appeared or vanished or changed:
            out.append({"a_position": pa, "b_position": pb, "appeared": appeared,
                        "vanished": vanished, "changed": changed})  # fmt: skip
    return out

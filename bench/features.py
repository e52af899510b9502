"""The feature explorer's part of the backend benchmark: runs shaped like real playground runs
(32 prompt + 128 output positions, top-20 each, feature ids from a heavy-tailed distribution
over d_sae 32,768), their feature data for every seeded run, the per-feature tables folded in
bulk, labels for every feature, and the storage figures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg
import numpy as np
import orjson

from backend.activations import packed
from backend.activations.aggregate import HIST_EDGES
from backend.activations.record import Extraction, Generation, RunRecord, RunTimings
from backend.db import fold_sql
from backend.features.catalog import import_labels
from bench import feature_seed_sql
from bench.bulk_fold import BulkFold

D_SAE = 32768
PROMPT_POSITIONS, OUTPUT_POSITIONS, TOP_K = 32, 128, 20
ZIPF_S = 1.1
SPECIAL_PROMPT_POSITIONS = (0, 1, 2, 3, 30, 31)  # BOS and chat-template tokens
WORDS = (
    "wake",
    "login",
    "names",
    "actually",
    "sky",
    "blue",
    "ocean",
    "night",
    "star",
    "river",
    "city",
    "music",
    "code",
    "error",
    "number",
    "date",
    "money",
    "family",
    "food",
    "light",
    "sound",
    "colour",
    "question",
    "answer",
    "time",
    "place",
    "name",
    "list",
)


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """Which ids are common and which rare (by construction of the distribution)."""

    common: int
    rare: int


class RunGenerator:
    """Heavy-tailed synthetic runs: feature rank r is drawn with p ~ 1/r^1.1, and ranks map to
    ids through a fixed random permutation; each position takes up to 20 distinct features,
    activations scaled per feature and sorted descending."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.rank_to_id = rng.permutation(D_SAE).astype(np.int32)
        weights = 1.0 / np.arange(1, D_SAE + 1) ** ZIPF_S
        self.cdf = np.cumsum(weights / weights.sum())
        self.scale = rng.lognormal(0.5, 0.6, D_SAE)
        self.positions = PROMPT_POSITIONS + OUTPUT_POSITIONS
        flags = np.zeros(self.positions, np.uint8)
        flags[PROMPT_POSITIONS:] |= packed.OUTPUT
        flags[list(SPECIAL_PROMPT_POSITIONS)] |= packed.SPECIAL
        self.flags = flags
        self.tokens = [f" w{p}" for p in range(self.positions)]

    def features(self) -> FeatureSet:
        return FeatureSet(common=int(self.rank_to_id[0]), rare=int(self.rank_to_id[20_000]))

    def timelines(self, n: int) -> list[packed.Timeline]:
        """``n`` runs' timelines, drawn together (numpy over all their positions at once)."""
        draws, rows_n = 48, n * self.positions
        ranks = np.searchsorted(self.cdf, self.rng.random((rows_n, draws)))
        ids = self.rank_to_id[np.minimum(ranks, D_SAE - 1)].astype(np.int64)
        ids.sort(axis=1)
        dup = np.zeros_like(ids, dtype=bool)
        dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
        acts = self.scale[ids] * self.rng.lognormal(0.0, 0.5, ids.shape)
        acts[dup] = -1.0  # duplicates drop out below
        order = np.argsort(-acts, axis=1)[:, :TOP_K]
        rows = np.arange(rows_n)[:, None]
        ids, acts = ids[rows, order], np.round(acts[rows, order], 4)
        out = []
        for r in range(n):
            block = slice(r * self.positions, (r + 1) * self.positions)
            keep = acts[block] > 0
            out.append(
                packed.Timeline(
                    activations=acts[block][keep].astype(np.float64),
                    token_ids=np.arange(1000, 1000 + self.positions, dtype=np.int64),
                    offsets=np.r_[0, np.cumsum(keep.sum(axis=1))].astype(np.int64),
                    feature_ids=ids[block][keep].astype(np.int32),
                    flags=self.flags,
                )
            )
        return out

    def entries(self, timeline: packed.Timeline) -> list[dict]:
        """The timeline as the SAE service answers it (a realistic preview's JSON)."""
        fids = timeline.feature_ids.tolist()
        acts = timeline.activations.tolist()
        offsets = timeline.offsets.tolist()
        return [
            {
                "position": p,
                "token_id": 1000 + p,
                "token": self.tokens[p],
                "segment": "output" if p >= PROMPT_POSITIONS else "prompt",
                "special": bool(timeline.flags[p] & packed.SPECIAL),
                "features": [
                    {"feature_id": fids[k], "activation": acts[k]}
                    for k in range(offsets[p], offsets[p + 1])
                ],
            }
            for p in range(self.positions)
        ]

    def record(
        self,
        timeline: packed.Timeline,
        request_id: str,
        created,
        model_id: str,
        sae_id: str,
        layer: int,
        *,
        realistic: bool,
    ) -> RunRecord:
        """A run as the run path records it; only a realistic one carries its timeline's JSON
        (the others' previews come from the small seeded run)."""
        ids = timeline.token_ids.tolist()
        return RunRecord.ok(
            request_id=request_id,
            created_at=created,
            prompt="bench prompt",
            generation=Generation(
                model_id, "bench output", ids[PROMPT_POSITIONS:], ids[:PROMPT_POSITIONS], "length"
            ),
            extraction=Extraction(
                sae_id,
                layer,
                TOP_K,
                timeline,
                self.tokens,
                orjson.dumps(self.entries(timeline)) if realistic else b"[]",
            ),
            timings=RunTimings(engine=100.0, sae=50.0, total=160.0),
        )


async def seed_labels(conn: asyncpg.Connection, sae_id: str, layer: int) -> str:
    """A label for every feature (as `playground import-labels` loads them); answers a word
    that a few hundred labels contain, for the search case."""
    rng = random.Random(11)
    labels = {f: " / ".join(rng.sample(WORDS, 3)) + f" {f}" for f in range(D_SAE)}
    await import_labels(conn, sae_id, layer, labels, D_SAE)
    return "rive"  # prefix of "river"


async def prepare_bulk(conn: asyncpg.Connection, sae_id: str, layer: int) -> BulkFold:
    keys = await fold_sql.sae_keys(conn, [(sae_id, layer)], HIST_EDGES)
    await feature_seed_sql.drop_member_index(conn)
    return BulkFold(keys[(sae_id, layer)])


async def finish_bulk(conn: asyncpg.Connection, bulk: BulkFold, last_version: int) -> None:
    await bulk.write(conn)
    await feature_seed_sql.create_member_index(conn)
    await feature_seed_sql.after_bulk_load(conn, last_version)


async def storage_figures(conn: asyncpg.Connection, realistic_ids: list[str]) -> dict:
    """Bytes per run: the run tables (index, previews) per realistic run, and the feature
    tables per seeded run (every seeded run carries its feature data)."""
    sizes = await feature_seed_sql.table_sizes(conn)
    runs = await conn.fetchval("SELECT count(*) FROM activation_run_features")
    realistic = await feature_seed_sql.row_bytes(conn, realistic_ids)
    feature_tables = sum(v for k, v in sizes.items() if k not in feature_seed_sql.RUN_TABLES)
    return {
        "table_bytes": sizes,
        "runs_with_features": runs,
        "run_tables_bytes_per_realistic_run": realistic,
        "feature_tables_bytes_per_run": round(feature_tables / max(runs, 1)),
        "ratio_with_features": round((realistic + feature_tables / max(runs, 1)) / realistic, 3),
    }

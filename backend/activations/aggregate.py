"""One run's feature data, aggregated per feature: what every cross-run table is derived from.

"Fired" means "in a position's stored top-k" at a position the SAE did not mark ``special``
(BOS and chat-template tokens fire hugely and say nothing about a feature: the same rule as
top-features' default). Per distinct feature: its max activation and the earliest position of
that max; per (feature, histogram bin): how many positions fired in that bin.

Stored as one ``bytea`` per run (``activation_run_features.data``), big-endian so that the
0016 migration can build the same bytes in SQL (``int4send``/``float4send``):

    b"RFA1", n_features u32, n_hist u32,
    feature_ids i32[F] (ascending), max_acts f32[F], max_pos i32[F],
    hist_fids i32[H], hist_counts i32[H], hist_bins i16[H]   (ascending by (fid, bin))

Histogram bins are fixed: bin 0 is [0, 0.01), bins 1..47 are log-spaced from 0.01 to 10,000,
and the last bin also holds anything above 10,000 (``HIST_EDGES`` are the 49 bin edges).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from backend.activations.packed import SPECIAL, Timeline

MAGIC = b"RFA1"
_HEADER = struct.Struct(">4sII")
N_BINS = 48
# Edge 0 is 0; edges 1..48 are np.geomspace(0.01, 10_000, 48), written out: the 0016 migration
# bins backfilled runs with the very same float64 values (a test compares the two).
HIST_EDGES: tuple[float, ...] = (
    0.0,
    0.01,
    0.013417128354799116,
    0.018001933328915445,
    0.024153425010859465,
    0.03240696035787167,
    0.04348083467104509,
    0.058338793975521185,
    0.07827390868337492,
    0.10502110796366664,
    0.1409081685511731,
    0.18905829836907578,
    0.2536619455757798,
    0.34034148825183075,
    0.45664054323381686,
    0.6126804780573316,
    0.8220412614574901,
    1.1029433117916125,
    1.4798331982375286,
    1.9855111964445809,
    2.6639858572587705,
    3.574304018221048,
    4.795689579154604,
    6.434438263328988,
    8.633168407011574,
    11.583232862547103,
    15.541372208032168,
    20.852058572487536,
    27.97747463288545,
    37.53773681925603,
    50.364863305262695,
    67.57518355386216,
    90.6664911341279,
    121.64839490258501,
    163.21721285632736,
    218.99062946059126,
    293.82253839710063,
    394.22547112067906,
    528.9373746757303,
    709.6820647674746,
    952.1895354084065,
    1277.564921467113,
    1714.1252532913106,
    2299.863853961206,
    3085.7568527160474,
    4140.199576459216,
    5554.958913183824,
    7453.1596743822765,
    10000.0,
)
_EDGES = np.asarray(HIST_EDGES, dtype=np.float64)
# Members' GIN keys are feature_id * KEY_BINS + bin of the run's max (see fold.py).
KEY_BINS = 64
MAX_FEATURE_ID = 2**31 // KEY_BINS - 1  # 33,554,431: far above any SAE's d_sae


def hist_bins(activations: np.ndarray) -> np.ndarray:
    """The fixed bin of each activation (i16)."""
    bins = np.searchsorted(_EDGES, activations, side="right") - 1
    return np.clip(bins, 0, N_BINS - 1).astype(np.int16)


@dataclass(frozen=True, slots=True)
class RunFeatures:
    """A run's per-feature aggregate. ``n_positions`` counts the non-special positions."""

    n_positions: int
    feature_ids: np.ndarray  # i32 [F], ascending
    max_acts: np.ndarray  # f32 [F]
    max_pos: np.ndarray  # i32 [F]
    hist_fids: np.ndarray  # i32 [H], ascending by (fid, bin)
    hist_counts: np.ndarray  # i32 [H]
    hist_bins: np.ndarray  # i16 [H]

    @property
    def n_features(self) -> int:
        return len(self.feature_ids)

    def keys(self) -> np.ndarray:
        """The members' GIN keys: feature id * KEY_BINS + the bin of this run's max (i32)."""
        return (
            self.feature_ids.astype(np.int64) * KEY_BINS
            + hist_bins(self.max_acts.astype(np.float64))
        ).astype(np.int32)


def from_timeline(timeline: Timeline) -> RunFeatures:
    positions = timeline.feature_positions()
    keep = (timeline.flags[positions] & SPECIAL) == 0
    fids = timeline.feature_ids[keep]
    in_range = fids <= MAX_FEATURE_ID
    if not in_range.all():
        keep[np.flatnonzero(keep)[~in_range]] = False
        fids = timeline.feature_ids[keep]
    acts = timeline.activations[keep]
    pos = positions[keep]
    n_positions = int(np.count_nonzero((timeline.flags & SPECIAL) == 0))
    if fids.size == 0:
        return empty(n_positions)
    # Group by feature; within a feature the highest activation first, then the earliest position.
    order = np.lexsort((pos, -acts, fids))
    fids, acts, pos = fids[order], acts[order], pos[order]
    starts = np.flatnonzero(np.r_[True, fids[1:] != fids[:-1]])
    bins = hist_bins(acts)
    hist_keys = fids.astype(np.int64) * N_BINS + bins
    uniq, counts = np.unique(hist_keys, return_counts=True)
    return RunFeatures(
        n_positions=n_positions,
        feature_ids=fids[starts].astype(np.int32),
        max_acts=acts[starts].astype(np.float32),
        max_pos=pos[starts].astype(np.int32),
        hist_fids=(uniq // N_BINS).astype(np.int32),
        hist_counts=counts.astype(np.int32),
        hist_bins=(uniq % N_BINS).astype(np.int16),
    )


def empty(n_positions: int) -> RunFeatures:
    i32: np.ndarray = np.zeros(0, dtype=np.int32)
    return RunFeatures(
        n_positions, i32, np.zeros(0, dtype=np.float32), i32, i32, i32, np.zeros(0, np.int16)
    )


def encode(run: RunFeatures) -> bytes:
    return b"".join(
        (
            _HEADER.pack(MAGIC, run.n_features, len(run.hist_fids)),
            run.feature_ids.astype(">i4").tobytes(),
            run.max_acts.astype(">f4").tobytes(),
            run.max_pos.astype(">i4").tobytes(),
            run.hist_fids.astype(">i4").tobytes(),
            run.hist_counts.astype(">i4").tobytes(),
            run.hist_bins.astype(">i2").tobytes(),
        )
    )


def decode(data: bytes, n_positions: int) -> RunFeatures:
    magic, f, h = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError("not a run-features aggregate")
    at = _HEADER.size

    def take(dtype: str, native: type, count: int) -> np.ndarray:
        nonlocal at
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=at)
        at += arr.nbytes
        return arr.astype(native)

    return RunFeatures(
        n_positions=n_positions,
        feature_ids=take(">i4", np.int32, f),
        max_acts=take(">f4", np.float32, f),
        max_pos=take(">i4", np.int32, f),
        hist_fids=take(">i4", np.int32, h),
        hist_counts=take(">i4", np.int32, h),
        hist_bins=take(">i2", np.int16, h),
    )


@dataclass(frozen=True, slots=True)
class FeatureInRun:
    """One feature's contribution from one run."""

    max_act: float
    max_pos: int
    hits: int
    hist: np.ndarray  # i64 [N_BINS]


def lookup(run: RunFeatures, feature_id: int) -> FeatureInRun | None:
    i = int(np.searchsorted(run.feature_ids, feature_id))
    if i >= run.n_features or run.feature_ids[i] != feature_id:
        return None
    lo = int(np.searchsorted(run.hist_fids, feature_id, side="left"))
    hi = int(np.searchsorted(run.hist_fids, feature_id, side="right"))
    hist: np.ndarray = np.zeros(N_BINS, dtype=np.int64)
    np.add.at(hist, run.hist_bins[lo:hi].astype(np.int64), run.hist_counts[lo:hi])
    return FeatureInRun(
        max_act=float(run.max_acts[i]),
        max_pos=int(run.max_pos[i]),
        hits=int(run.hist_counts[lo:hi].sum()),
        hist=hist,
    )

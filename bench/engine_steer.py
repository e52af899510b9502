"""bench.engine's steering rows: the same greedy workload at one concurrency with no request
steered, one in 32 steered, and every request steered (one vector at the middle layer), through
the HTTP API in the same run, interleaved and best of N; each row's throughput over the plain
row's (target >= 0.9, docs/engine.md "Steering"), and the same ratio in output tokens per CPU
second of the engine's process tree (least CPU over the tries), which a busy shared machine
disturbs far less than wall time."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import numpy as np

from bench.engine_http import best_of_modes, in_mode, run_http

# Which requests carry steer: none, one in 32, all.
MIXES: dict[str, Callable[[int], bool]] = {
    "plain": lambda i: False,
    "1 in 32 steered": lambda i: i % 32 == 0,
    "all steered": lambda i: True,
}


def steer_for(model: str, seed: int) -> list[dict]:
    """One random unit vector, strength 4, after the model's middle block."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    v = np.random.default_rng(seed).standard_normal(config.hidden_size)
    raw = (v / np.linalg.norm(v)).astype("<f4").tobytes()
    layer = config.num_hidden_layers // 2
    return [{"layer": layer, "vector_b64": base64.b64encode(raw).decode(), "scale": 4.0}]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (the engine core)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_rows(
    url: str, pid: int, requests: list[dict], model: str, level: int, repeats: int
) -> list[dict]:
    steer = steer_for(model, 0)
    greedy = in_mode(requests, "greedy")
    bodies = {
        mix: [{**r, "steer": steer} if pick(i) else r for i, r in enumerate(greedy)]
        for mix, pick in MIXES.items()
    }
    cpu: dict[str, list[float]] = {mix: [] for mix in MIXES}

    def once(mix: str):
        before = cpu_seconds(pid)
        result = asyncio.run(run_http(url, bodies[mix], level))
        cpu[mix].append(cpu_seconds(pid) - before)
        return result

    best = best_of_modes(once, list(MIXES), repeats)
    plain = best["plain"][0]
    rows = []
    for mix, (row, _outputs) in best.items():
        steered = sum(1 for i in range(len(greedy)) if MIXES[mix](i))
        tokens_per_cpu_s = row["output_tokens"] / min(cpu[mix])
        rows.append(
            row
            | {
                "transport": f"http, {mix}",
                "concurrency": level,
                "mode": "greedy",
                "steered_requests": steered,
                "engine_cpu_s": [round(c, 3) for c in cpu[mix]],
                "tokens_per_cpu_s": round(tokens_per_cpu_s, 1),
                "vs_plain": round(row["output_tokens_per_s"] / plain["output_tokens_per_s"], 3),
            }
        )
        print(f"  http c={level} {mix}: {row['output_tokens_per_s']} out tok/s", flush=True)
    plain_cpu = next(r for r in rows if r["steered_requests"] == 0)["tokens_per_cpu_s"]
    for row in rows:
        row["vs_plain_cpu"] = round(row["tokens_per_cpu_s"] / plain_cpu, 3)
    return rows

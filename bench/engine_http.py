"""The engine benchmark's HTTP load: a workload in each sampling mode, sent at a concurrency
to a running engine, best of a few tries (bench/engine.py and bench/engine_steer.py use it)."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench import harness
from engine.generation.protocol import GenerateRequest

_DEFAULTS = GenerateRequest.model_fields
TOP_K_ALONE = 50
# Sampling parameters of each mode (the API's own defaults for the page's mode).
MODES = {
    "greedy": {"temperature": 0.0},
    "defaults": {
        "temperature": _DEFAULTS["temperature"].default,
        "top_p": _DEFAULTS["top_p"].default,
    },
    "top-k": {"temperature": _DEFAULTS["temperature"].default, "top_p": 1.0, "top_k": TOP_K_ALONE},
}


def in_mode(requests: list[dict], mode: str) -> list[dict]:
    """The workload with one mode's sampling parameters. No per-request seed, as the page sends
    none by default."""
    return [{**r, **MODES[mode]} for r in requests]


def summarize(
    name: str, wall_s: float, latencies_s: list[float], output_tokens: int, requests: int
) -> dict:
    latency = harness.timing_stats(latencies_s)
    return {
        "name": name,
        "requests": requests,
        "wall_s": round(wall_s, 3),
        "requests_per_s": round(requests / wall_s, 3),
        "output_tokens": output_tokens,
        "output_tokens_per_s": round(output_tokens / wall_s, 2),
        "latency_p50_ms": latency["p50_ms"],
        "latency_p99_ms": latency["p99_ms"],
    }


async def run_http(url: str, requests: list[dict], concurrency: int) -> tuple[dict, dict]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    per_token_s: list[float] = []  # the engine's own time between a request's first and last token
    outputs: dict[str, list[int]] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:

        async def one(body: dict) -> None:
            async with gate:
                started = time.perf_counter()
                response = await client.post("/generate", json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                answer = response.json()
                outputs[answer["request_id"]] = answer["output_token_ids"]
                if len(answer["output_token_ids"]) > 1:
                    steps = len(answer["output_token_ids"]) - 1
                    per_token_s.append(answer["timings_ms"]["generate"] / 1000 / steps)

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in requests))
        wall = time.perf_counter() - started
    tokens = sum(len(ids) for ids in outputs.values())
    row = summarize("http", wall, latencies, tokens, len(requests))
    # Per decode step of one request: output length and per-request costs do not enter it.
    row["decode_ms_per_token_p50"] = harness.timing_stats(per_token_s)["p50_ms"]
    return row, outputs


def best_of_modes(run_once, modes: list[str], repeats: int) -> dict[str, tuple[dict, dict]]:
    """Best of ``repeats`` tries per mode, the modes interleaved so that they share the load of
    a busy machine (which only ever slows a run)."""
    tries: dict[str, list[tuple[dict, dict]]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode in modes:
            tries[mode].append(run_once(mode))
    best = {}
    for mode, results in tries.items():
        row, outputs = min(results, key=lambda t: t[0]["wall_s"])
        row["walls_s"] = [t[0]["wall_s"] for t in results]
        best[mode] = (row, outputs)
    return best

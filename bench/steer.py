"""A steered+default pair through the backend against one plain run, in the same run
(docs/steering.md, target: pair wall time <= 1.3x one plain run).

The tiny stack (bench/tiny_stack.py: tiny Llama-3.1 on the vLLM CPU engine, the demo SAE,
embedded Postgres, the backend), then rounds of: one plain blocking run, one blocking steered
pair (``steer`` one feature, ``compare: true``), in alternating order so that drift hits both;
every request the same prompt, settings and seed. Reports each mode's median wall time, the
output lengths (the pair's two answers may differ in length from the plain one: steering changes
the text) and the ratio of medians. Also the streamed pair against one streamed run.

    python -m bench.steer --rounds 10 --max-tokens 64
    python -m bench.steer --backend-url http://127.0.0.1:8000   # a running stack (`up`)

Against a running stack the feature steered is #5 of the backend's default SAE.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.tiny_stack import tiny_stack
from common import sse

RUN = "/playground/activations/run"
TOKEN = "bench-steer-token"
LIMITS = {
    "PLAYGROUND_RATE_GPU_PER_WINDOW": "100000",
    "PLAYGROUND_GPU_IN_FLIGHT_PER_CLIENT": "100",
    "PLAYGROUND_GPU_IN_FLIGHT_GLOBAL": "100",
}


def body(max_tokens: int, pair: bool) -> dict[str, Any]:
    plain = {"prompt": "Write a short story about a lighthouse.", "max_tokens": max_tokens,
             "temperature": 0.8, "seed": 42}  # fmt: skip
    return (
        {**plain, "steer": [{"feature_id": 5, "strength": 8.0}], "compare": True} if pair else plain
    )


async def one(http: httpx.AsyncClient, url: str, req: dict, streamed: bool) -> tuple[float, int]:
    """(seconds, output tokens of its answer: the plain or the steered one) for one request,
    to its final answer (a pair's: both runs stored)."""
    start = time.perf_counter()
    if streamed:
        tokens = 0
        async with http.stream(
            "POST", url + RUN, json=req, headers={"accept": sse.MEDIA_TYPE}
        ) as r:
            r.raise_for_status()
            async for name, data in sse.aparse(r.aiter_lines()):
                if name == "error":
                    raise RuntimeError(data)
                if name == "done" and data.get("role") != "default":
                    tokens += len(data["output"]["token_ids"])
    else:
        response = await http.post(url + RUN, json=req)
        response.raise_for_status()
        tokens = len(response.json()["output"]["token_ids"])
    return time.perf_counter() - start, tokens


async def drive(url: str, rounds: int, max_tokens: int) -> list[dict[str, Any]]:
    rows = []
    async with httpx.AsyncClient(timeout=600) as http:
        for streamed in (False, True):
            for req in (body(max_tokens, False), body(max_tokens, True)):  # warm-up
                await one(http, url, req, streamed)
            times: dict[str, list[float]] = {"plain": [], "pair": []}
            tokens: dict[str, list[int]] = {"plain": [], "pair": []}
            for i in range(rounds):
                order = ("plain", "pair") if i % 2 == 0 else ("pair", "plain")
                for mode in order:
                    secs, n = await one(http, url, body(max_tokens, mode == "pair"), streamed)
                    times[mode].append(secs)
                    tokens[mode].append(n)
            for mode in ("plain", "pair"):
                rows.append({
                    "mode": f"{'streamed' if streamed else 'blocking'} {mode}",
                    "n": rounds,
                    "p50_s": statistics.median(times[mode]),
                    "min_s": min(times[mode]),
                    "tokens": statistics.fmean(tokens[mode]),
                })  # fmt: skip
            plain, pair = rows[-2], rows[-1]
            pair["ratio"] = pair["p50_s"] / plain["p50_s"]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument(
        "--backend-url", default=None, help="drive this running backend instead (e.g. `up`'s)"
    )
    args = parser.parse_args()
    if args.backend_url:
        rows = asyncio.run(drive(args.backend_url.rstrip("/"), args.rounds, args.max_tokens))
        report(rows)
        return 0
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="playground-steer-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    with tiny_stack(root, TOKEN, LIMITS) as stack:
        rows = asyncio.run(drive(stack.backend.url, args.rounds, args.max_tokens))
    report(rows)
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    harness.print_table(
        rows,
        [
            harness.Column("mode", "mode"),
            harness.Column("n", "n"),
            harness.Column("p50_s", "p50 s", ".3f"),
            harness.Column("min_s", "min s", ".3f"),
            harness.Column("tokens", "output tokens", ".1f"),
            harness.Column("ratio", "pair / plain p50", ".2f"),
        ],
        "Steered+default pair vs one plain run (target: ratio <= 1.3)",
    )
    print(harness.machine())


if __name__ == "__main__":
    raise SystemExit(main())

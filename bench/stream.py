"""Streamed runs on the real tiny stack: time to first token through the backend's stream vs
the engine's own stream, streamed vs blocking throughput under concurrency, and the SAE work
of a streamed run.

    .venv/bin/python -m bench.stream [--pairs 20] [--runs 64] [--concurrency 32]
        [--max-tokens 64]

Starts embedded Postgres, the vLLM engine (tiny Llama-3.1), the SAE service (demo SAE) and the
backend on 127.0.0.1 (limits lifted far above what the benchmark sends), then:

1. TTFT: ``--pairs`` times the same request (prompt, seed) to the engine's stream and to the
   backend's stream, one at a time, alternating which goes first; TTFT = POST to the first
   ``token`` event. Overhead = backend - engine per pair (p50, p99).
2. Throughput: ``--runs`` runs through the backend at ``--concurrency`` (at most 32) clients,
   streamed and blocking, in alternating blocks (streamed, blocking, streamed, blocking); runs/s
   and output tokens/s; the ratio streamed / blocking. Also how many token events arrive per
   read from the socket on average (events queue up when the client or server falls behind).
3. SAE work (positions through the SAE service's truncated forward, from its ``/health``
   ``work_positions``) of the streamed runs against one extraction at the end (P + N per run)
   and against re-extracting the whole prefix at every chunk (what the chunk boundaries seen in
   the ``features`` events would have cost).

Writes bench/results/stream-<stamp>.json (and $OUT when set).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.tiny_stack import tiny_stack
from common import sse
from common.services import Service

MAX_CONCURRENCY = 32
RUN = "/playground/activations/run"
EVENTS = {"accept": sse.MEDIA_TYPE}
PROMPTS = ["Name three colours.", "What is 2+2?", "Tell me about the sea.", "Hello there!"]
TOKEN = "bench-stream-token"
# Far above what the benchmark sends: the limiter does its work, it never refuses.
LIMITS = {
    "PLAYGROUND_RATE_READ_PER_WINDOW": "10000000",
    "PLAYGROUND_RATE_GPU_PER_WINDOW": "1000000",
    "PLAYGROUND_GPU_IN_FLIGHT_PER_CLIENT": "1000",
    "PLAYGROUND_GPU_IN_FLIGHT_GLOBAL": "1000",
}


@dataclass
class Streamed:
    """What one streamed request showed."""

    ttft_s: float | None = None
    total_s: float = 0.0
    tokens: int = 0
    reads_with_tokens: int = 0
    chunk_ends: list[int] = field(default_factory=list)  # features events' last position + 1
    stages: dict[str, float] | None = None  # the first token's timing_ms (--breakdown)
    done: dict[str, Any] | None = None


async def stream_request(
    client: httpx.AsyncClient, path: str, *, json: dict, headers: dict[str, str]
) -> Streamed:
    """POST and read the event stream to its end, timing the first token event."""
    out = Streamed()
    reader = sse.Reader()
    started = time.perf_counter()
    async with client.stream("POST", path, json=json, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
        pending = ""
        async for chunk in response.aiter_text():
            lines = (pending + chunk).split("\n")
            pending = lines.pop()
            tokens_here = 0
            for line in lines:
                frame = reader.feed(line.rstrip("\r"))
                if frame is None:
                    continue
                name, data = frame
                if name == "token":
                    if out.ttft_s is None:
                        out.ttft_s = time.perf_counter() - started
                        out.stages = data.get("timing_ms")
                    tokens_here += 1
                elif name == "features" and data["entries"]:
                    out.chunk_ends.append(data["entries"][-1]["position"] + 1)
                elif name == "done":
                    out.done = data
                elif name == "error":
                    raise RuntimeError(f"{path}: error event {data}")
            out.tokens += tokens_here
            out.reads_with_tokens += tokens_here > 0
    out.total_s = time.perf_counter() - started
    return out


FEATURES = True  # --no-features: runs without SAE features (to tell SAE costs from the rest)
BREAKDOWN = False  # --breakdown: the backend's per-stage timestamps of the first token
STAGES = ["admitted", "route", "claimed", "engine_open", "engine_prompt", "engine_token", "queued"]


def body(i: int, max_tokens: int, request_id: str | None = None) -> dict[str, Any]:
    return {
        "prompt": PROMPTS[i % len(PROMPTS)],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": i,
        **({"request_id": request_id} if request_id else {}),
        **({} if FEATURES else {"collect_activations": False}),
    }


async def sae_work(sae_url: str) -> int:
    auth = {"authorization": f"Bearer {TOKEN}"}  # without it /health says only ok/down
    async with httpx.AsyncClient(timeout=30, headers=auth) as client:
        return int((await client.get(sae_url + "/health")).json()["work_positions"])


async def measure_ttft(engine_url: str, backend_url: str, pairs: int, max_tokens: int) -> dict:
    auth = {"authorization": f"Bearer {TOKEN}"}
    engine_s, backend_s, stages = [], [], []
    async with httpx.AsyncClient(timeout=300) as client:
        for i in range(pairs + 1):  # the first pair warms both paths up
            req = body(i, max_tokens)
            engine_body = {**req, "stream": True}
            engine_body.pop("collect_activations", None)

            async def engine(req: dict = engine_body) -> Streamed:
                return await stream_request(
                    client, engine_url + "/generate", json=req, headers=auth
                )

            async def backend(req: dict = req) -> Streamed:
                headers = EVENTS | ({"x-playground-timing": "1"} if BREAKDOWN else {})
                return await stream_request(client, backend_url + RUN, json=req, headers=headers)

            first, second = (engine, backend) if i % 2 == 0 else (backend, engine)
            a, b = await first(), await second()
            e, bk = (a, b) if i % 2 == 0 else (b, a)
            if i and e.ttft_s is not None and bk.ttft_s is not None:
                engine_s.append(e.ttft_s)
                backend_s.append(bk.ttft_s)
                if bk.stages:
                    stages.append(split_stages(bk.stages, bk.ttft_s, e.ttft_s))
    overhead = [b - e for e, b in zip(engine_s, backend_s, strict=True)]
    out = {
        "engine": harness.timing_stats(engine_s),
        "backend": harness.timing_stats(backend_s),
        "overhead": harness.timing_stats(overhead),
    }
    for name in stages[0] if stages else []:
        out[f"stage {name}"] = harness.timing_stats([s[name] / 1000 for s in stages])
    return out


def split_stages(marks: dict[str, float], backend_s: float, engine_s: float) -> dict[str, float]:
    """One streamed run's first token, stage by stage (ms): the time between consecutive
    marks (``timing_ms``), the engine's part measured against the engine's own TTFT of the same
    request (its stream's headers to its first token), and what the client saw past ``queued``
    (the response write and the wire both ways, plus what comes before our middleware)."""
    out, last = {}, 0.0
    for name in STAGES:
        if name in marks:
            out[name] = marks[name] - last
            last = marks[name]
    engine_part = marks["engine_token"] - marks["claimed"]
    out["engine_beyond_own_ttft"] = engine_part - engine_s * 1000
    out["client_past_queued"] = backend_s * 1000 - marks["queued"]
    return out


async def run_block(
    backend_url: str, *, streamed: bool, runs: int, concurrency: int, max_tokens: int, seed0: int
) -> dict:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(seed0 + i)
    results: list[Streamed] = []
    tokens = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            req = body(i, max_tokens, f"bench-{uuid.uuid4().hex[:12]}")
            if streamed:
                got = await stream_request(client, RUN, json=req, headers=EVENTS)
                assert got.done is not None
                results.append(got)
                tokens += len(got.done["output"]["token_ids"])
            else:
                response = await client.post(RUN, json=req)
                response.raise_for_status()
                tokens += len(response.json()["output"]["token_ids"])

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=backend_url, timeout=600, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    block: dict[str, Any] = {
        "mode": "streamed" if streamed else "blocking",
        "runs": runs,
        "seconds": round(elapsed, 3),
        "runs_per_s": round(runs / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 2),
    }
    if streamed:
        reads = sum(r.reads_with_tokens for r in results)
        block["tokens_per_read"] = round(sum(r.tokens for r in results) / max(reads, 1), 3)
        block["_streams"] = results
    return block


def prefix_work(streams: list[Streamed]) -> tuple[int, int]:
    """(one extraction at the end, re-extracting the prefix at every chunk) in positions."""
    one, every = 0, 0
    for s in streams:
        assert s.done is not None
        total = len(s.done["output"]["prompt_token_ids"]) + len(s.done["output"]["token_ids"])
        one += total
        every += sum(s.chunk_ends)
    return one, every


async def drive(args: argparse.Namespace, engine: Service, sae: Service, backend: Service):
    print(f"TTFT: {args.pairs} pairs", flush=True)
    ttft = await measure_ttft(engine.url, backend.url, args.pairs, args.max_tokens)
    for name, row in ttft.items():  # at once: a later failure must not lose them
        print(f"  TTFT {name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms", flush=True)
    blocks: list[dict[str, Any]] = []
    if args.ttft_only:
        summary = {
            "ttft_engine_p50_ms": ttft["engine"]["p50_ms"],
            "ttft_backend_p50_ms": ttft["backend"]["p50_ms"],
            "ttft_overhead_p50_ms": ttft["overhead"]["p50_ms"],
            "ttft_overhead_p99_ms": ttft["overhead"]["p99_ms"],
        }
        return ttft, blocks, summary
    streamed_work = 0
    streams: list[Streamed] = []
    for n, streamed in enumerate([True, False, True, False]):
        print(f"throughput block {n + 1}/4 ({'streamed' if streamed else 'blocking'})", flush=True)
        before = await sae_work(sae.url)
        block = await run_block(
            backend.url,
            streamed=streamed,
            runs=args.runs // 2,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            seed0=1000 * (n + 1),
        )
        work = await sae_work(sae.url) - before
        block["sae_work_positions"] = work
        if streamed:
            streamed_work += work
            streams += block.pop("_streams")
        blocks.append(block)
    one, every = prefix_work(streams)
    runs_s = {m: sum(b["runs"] for b in blocks if b["mode"] == m) for m in ("streamed", "blocking")}
    secs = {m: sum(b["seconds"] for b in blocks if b["mode"] == m) for m in runs_s}
    streamed_rate = runs_s["streamed"] / secs["streamed"]
    blocking_rate = runs_s["blocking"] / secs["blocking"]
    per_read = [b["tokens_per_read"] for b in blocks if "tokens_per_read" in b]
    summary = {
        "ttft_engine_p50_ms": ttft["engine"]["p50_ms"],
        "ttft_backend_p50_ms": ttft["backend"]["p50_ms"],
        "ttft_overhead_p50_ms": ttft["overhead"]["p50_ms"],
        "ttft_overhead_p99_ms": ttft["overhead"]["p99_ms"],
        "streamed_runs_per_s": round(streamed_rate, 3),
        "blocking_runs_per_s": round(blocking_rate, 3),
        "throughput_ratio_streamed_over_blocking": round(streamed_rate / blocking_rate, 3),
        "tokens_per_read_streamed": round(statistics.fmean(per_read), 3) if per_read else None,
        "sae_work_streamed_positions": streamed_work,
        "sae_work_one_extraction_positions": one,
        "sae_work_prefix_every_chunk_positions": every,
        "sae_work_ratio_vs_one_extraction": round(streamed_work / one, 3) if one else None,
        "sae_work_ratio_prefix_every_chunk_vs_one": round(every / one, 3) if one else None,
        "chunks_per_streamed_run": round(statistics.fmean(len(s.chunk_ends) for s in streams), 2)
        if streams
        else None,
    }
    return ttft, blocks, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=64, help="per mode, in two blocks")
    parser.add_argument("--concurrency", type=int, default=MAX_CONCURRENCY)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--ttft-only", action="store_true", help="skip the throughput blocks")
    parser.add_argument(
        "--no-features", action="store_true", help="runs without SAE features (diagnosis)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="TTFT stage by stage (X-Playground-Timing: 1; stages in docs/backend.md)",
    )
    args = parser.parse_args()
    global FEATURES, BREAKDOWN
    FEATURES = not args.no_features
    BREAKDOWN = args.breakdown
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency: 1..{MAX_CONCURRENCY}")
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="playground-stream-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    with tiny_stack(root, TOKEN, LIMITS) as stack:
        ttft, blocks, summary = asyncio.run(drive(args, stack.engine, stack.sae, stack.backend))
    ttft_rows = [{"path": k, **v} for k, v in ttft.items()]
    harness.print_table(
        ttft_rows,
        [
            harness.Column("path", "TTFT"),
            harness.Column("n", "n"),
            harness.Column("p50_ms", "p50 ms", ".2f"),
            harness.Column("p99_ms", "p99 ms", ".2f"),
            harness.Column("mean_ms", "mean ms", ".2f"),
        ],
        "Time to first token (sequential, same request to each path)",
    )
    harness.print_table(
        blocks,
        [
            harness.Column("mode", "mode"),
            harness.Column("runs", "runs"),
            harness.Column("seconds", "s", ".2f"),
            harness.Column("runs_per_s", "runs/s", ".3f"),
            harness.Column("tokens_per_s", "tok/s", ".1f"),
            harness.Column("tokens_per_read", "tok/read", ".2f"),
            harness.Column("sae_work_positions", "SAE work"),
        ],
        f"Throughput at concurrency {args.concurrency}",
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    harness.write_report(
        harness.report(
            "stream",
            config=vars(args) | {"data_dir": str(args.data_dir) if args.data_dir else None},
            tables={"ttft": ttft_rows, "throughput": blocks},
            summary=summary,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

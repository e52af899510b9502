"""Benchmark of the backend's read and write paths against a real Postgres.

    .venv/bin/python -m bench.backend            # 100,000 seeded runs, 2,048 x top-20 run
    .venv/bin/python -m bench.backend --quick    # small smoke run (seconds)

Starts a throwaway embedded Postgres (or uses --database-url), migrates it, seeds N runs with
COPY, serves `playground backend` in its own process with instant stub upstreams (served from
this process), then times each endpoint over HTTP, sequentially, and the bare asyncpg
`SELECT * FROM activation_run_previews WHERE request_id = $1` of the same big preview row as
the baseline. Prints p50/p99/req-s and each endpoint's p50 as a ratio to that baseline; writes
JSON to bench/results/. `run` is reported with its own overhead: total minus the time spent
waiting on the upstreams (the backend's own timings_ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from backend.activations import aggregate, packed, storage
from backend.activations.record import (
    Extraction,
    Generation,
    RunRecord,
    RunTimings,
)
from backend.db import fold_sql, queries, run_reads
from backend.db.migrate import upgrade
from bench import compare_cases, feature_seed_sql, harness, observability
from bench import features as feature_bench
from common.defaults import DEFAULT_MODEL_ID, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER
from common.pgembed import embedded_postgres
from common.services import Service, free_port

MODEL = DEFAULT_MODEL_ID
BIG_ID = "bench-big"


# -- synthetic data ------------------------------------------------------------------------------


def make_timeline(n_positions: int, top_k: int, output_start: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    entries = []
    for p in range(n_positions):
        special = p == 0 or (p < output_start and p % 97 == 1)
        ids = rng.sample(range(32768), top_k)
        acts = sorted((round(rng.uniform(0.05, 12.0), 4) for _ in ids), reverse=True)
        entries.append(
            {
                "position": p,
                "token_id": 128000 if p == 0 else 1000 + p % 5000,
                "token": "<|begin_of_text|>" if p == 0 else f" tok{p}",
                "segment": "prompt" if p < output_start else "output",
                "special": special,
                "features": [
                    {"feature_id": f, "activation": a} for f, a in zip(ids, acts, strict=True)
                ],
            }
        )
    return entries


def run_record(
    request_id: str, created: datetime, timeline: list[dict], output_start: int
) -> RunRecord:
    """A stored run shaped like the run path's: rows come from ``storage`` like every writer's."""
    tl, tokens = packed.from_entries(timeline)
    token_ids = [e["token_id"] for e in timeline]
    return RunRecord.ok(
        request_id=request_id,
        created_at=created,
        prompt="bench prompt",
        generation=Generation(
            model_id=MODEL,
            output_text="bench output",
            output_token_ids=token_ids[output_start:],
            prompt_token_ids=token_ids[:output_start],
            finish_reason="length",
        ),
        extraction=Extraction(
            sae_id=DEFAULT_SAE_ID,
            sae_layer=DEFAULT_SAE_LAYER,
            sae_top_k=max((len(e["features"]) for e in timeline), default=0),
            timeline=tl,
            tokens=tokens,
            timeline_json=orjson.dumps(timeline),
        ),
        timings=RunTimings(engine=100.0, sae=50.0, total=160.0),
    )


async def seed(url: str, n_runs: int, big_positions: int, top_k: int) -> dict:
    """N runs spread over 30 days, each with the feature data of a run shaped like a real one
    (bench/features.py); every tenth keeps that run's full preview, the others a small one
    (8 positions x top-3). The per-feature tables are folded in bulk. Plus the big run."""
    small = run_record("x", datetime.now(UTC), make_timeline(8, 3, 4, seed=1), 4)
    small_preview = storage.preview_row(small)
    gen = feature_bench.RunGenerator()
    now = datetime.now(UTC)
    realistic_ids: list[str] = []
    conn = await asyncpg.connect(url)
    try:
        bulk = await feature_bench.prepare_bulk(conn, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER)
        batch = 500
        for start in range(0, n_runs, batch):
            idx, prev, feats = [], [], []
            stop = min(start + batch, n_runs)
            for i, timeline in zip(range(start, stop), gen.timelines(stop - start), strict=True):
                created = now - timedelta(seconds=i * 26)  # 100k runs over ~30 days
                rid = f"seed-{i:07d}"
                realistic = i % 10 == 0
                record = gen.record(
                    timeline,
                    rid,
                    created,
                    MODEL,
                    DEFAULT_SAE_ID,
                    DEFAULT_SAE_LAYER,
                    realistic=realistic,
                )
                rows = storage.rows(record)
                stamp = {"request_id": rid, "created_at": created, "updated_at": created}
                idx.append(rows.index)
                prev.append(
                    rows.preview if realistic else dataclasses.replace(small_preview, **stamp)
                )
                feats.append((*dataclasses.astuple(rows.features), i + 1))
                bulk.add(
                    rid, i + 1, aggregate.decode(rows.features.data, rows.features.n_positions)
                )
                if realistic:
                    realistic_ids.append(rid)
            await queries.copy_runs(conn, idx, prev)
            await feature_seed_sql.copy_rows(
                conn, "activation_run_features", [*queries.FEATURES_COLUMNS, "version"], feats
            )
            await fold_sql.copy_members(conn, bulk.take_members())
            print(f"  seeded {min(start + batch, n_runs):,} runs", end="\r", flush=True)
        common, rare = bulk.most_and_least_fired()
        await feature_bench.finish_bulk(conn, bulk, n_runs)
        search_word = await feature_bench.seed_labels(conn, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER)
        half = big_positions // 2
        big = run_record(BIG_ID, now, make_timeline(big_positions, top_k, half, seed=2), half)
        await queries.copy_runs(conn, [storage.index_row(big)], [storage.preview_row(big)])
        await compare_cases.seed_pair(conn, now, big_positions, top_k, make_timeline, run_record)
        # Leave the database quiet: no autovacuum of the fresh rows or checkpoint mid-timing.
        await conn.execute("VACUUM (ANALYZE)")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
        return {
            "common_feature": common,
            "rare_feature": rare,
            "search": search_word,
            "realistic_ids": realistic_ids,
        }
    finally:
        await conn.close()


# -- instant upstreams ---------------------------------------------------------------------------


def stub_answers(run_positions: int, top_k: int) -> dict[str, dict]:
    """The stub engine's and SAE's one answer each, by route: what the real services would send
    (tests/bench/test_bench_stub.py holds them to the real response models)."""
    half = run_positions // 2
    tl = make_timeline(run_positions, top_k, half, seed=3)
    ids = [e["token_id"] for e in tl]
    return {
        "/generate": {
            "request_id": "bench",
            "model_id": MODEL,
            "output_text": "bench output",
            "output_token_ids": ids[half:],
            "prompt_token_ids": ids[:half],
            "finish_reason": "length",
            "usage": {"prompt_tokens": half, "output_tokens": len(ids) - half},
            "timings_ms": {"queue": 0.0, "generate": 1.0, "total": 1.0},
        },
        "/extract_features": {
            "sae_id": DEFAULT_SAE_ID,
            "layer": DEFAULT_SAE_LAYER,
            "d_sae": 32768,
            "model_id": MODEL,
            "top_k": top_k,
            "from_position": 0,
            "feature_timeline": tl,
            "batch_size": 1,
            "work": {"positions": len(ids), "cache": None},
            "timings_ms": {"total": 1.0},
        },
    }


def stub_app(run_positions: int, top_k: int) -> FastAPI:
    """Engine and SAE in one app; answers are prepared once so they cost ~nothing."""
    answers = stub_answers(run_positions, top_k)
    generate = orjson.dumps(answers["/generate"])
    extract = orjson.dumps(answers["/extract_features"])
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/generate")
    async def gen(_: Request):
        return Response(generate, media_type="application/json")

    @app.post("/extract_features")
    async def ext(_: Request):
        return Response(extract, media_type="application/json")

    return app


def serve_in_thread(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


# Rate limits far above what one sequential benchmark client sends: the limiter still does its
# per-request work (window count, lease), it just never refuses.
BENCH_LIMITS = {
    "PLAYGROUND_RATE_READ_PER_WINDOW": "10000000",
    "PLAYGROUND_RATE_GPU_PER_WINDOW": "1000000",
}


def start_backend(
    db_url: str,
    upstream: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> Service:
    env = {
        "DATABASE_URL": db_url,
        "PLAYGROUND_ACTIVATIONS_HF_URL": upstream,
        "PLAYGROUND_SAE_URL": upstream,
        **BENCH_LIMITS,
        **(env or {}),
    }
    backend_args = ["backend", "--log-level", log_level]
    service = Service("backend", backend_args, free_port(), log_path, env)
    service.start()
    try:
        service.wait_healthy(60)
    except BaseException:
        service.stop()
        raise
    return service


def feature_cases(seeded: dict) -> dict:
    base = f"/playground/features/{DEFAULT_SAE_ID}/{DEFAULT_SAE_LAYER}"
    by_feature = {"sae_id": DEFAULT_SAE_ID, "sae_layer": DEFAULT_SAE_LAYER, "limit": 50}
    common, rare = seeded["common_feature"], seeded["rare_feature"]
    return {
        "feature_common": ("GET", f"{base}/{common}", {}),
        "feature_rare": ("GET", f"{base}/{rare}", {}),
        "runs_by_feature": (
            "GET",
            "/playground/activations/runs",
            {"params": by_feature | {"feature_id": common}},
        ),
        "runs_by_feature_rare": (
            "GET",
            "/playground/activations/runs",
            {"params": by_feature | {"feature_id": rare}},
        ),
        "label_search": (
            "GET",
            "/playground/features/search",
            {"params": {"q": seeded["search"], "limit": 20}},
        ),
    }


def deep_feature_page(url: str, seeded: dict, n: int) -> dict:
    """Page 4 (runs 150-199) of the most common feature: below its 128-run leaderboard, so
    served from the GIN-indexed member rows."""
    params = {
        "sae_id": DEFAULT_SAE_ID,
        "sae_layer": DEFAULT_SAE_LAYER,
        "feature_id": seeded["common_feature"],
        "limit": 50,
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        cursor = None
        for _ in range(3):
            page = client.get(
                "/playground/activations/runs",
                params=params | ({"cursor": cursor} if cursor else {}),
            ).json()
            cursor = page["next_cursor"]
        result, _ = time_http(
            client, "GET", "/playground/activations/runs", n, 2, params=params | {"cursor": cursor}
        )
        return result


def merge_rounds(parts: list[dict]) -> dict:
    """Rounds of one case as one figure: medians of the rounds' p50/p99, summed counts."""
    return {
        "n": sum(p["n"] for p in parts),
        "p50_ms": round(statistics.median(p["p50_ms"] for p in parts), 3),
        "p99_ms": round(max(p["p99_ms"] for p in parts), 3),
        "req_per_s": round(statistics.mean(p["req_per_s"] for p in parts), 1),
    }


# -- measuring -----------------------------------------------------------------------------------


def stats(samples_ms: list[float], elapsed_s: float) -> dict:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(p99, 3),
        "req_per_s": round(len(ordered) / elapsed_s, 1),
    }


def time_http(client: httpx.Client, method: str, path: str, n: int, warmup: int, **kw) -> tuple:
    for _ in range(warmup):
        client.request(method, path, **kw).raise_for_status()
    samples, extra = [], []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        response = client.request(method, path, **kw)
        samples.append((time.perf_counter() - t) * 1000)
        response.raise_for_status()
        extra.append(response)
    return stats(samples, time.perf_counter() - start), extra


async def time_direct_write(
    url: str, positions: int, top_k: int, n: int, warmup: int, *, with_features: bool
) -> dict:
    """The run's database write alone (same statement, same settings as the backend's pool).
    ``with_features=False`` is the write as it was before the feature explorer: index and
    preview only (the statement also probes for a stale feature row to delete)."""
    conn = await asyncpg.connect(url, server_settings={"synchronous_commit": "off"})
    try:
        now = datetime.now(UTC)
        timeline = make_timeline(positions, top_k, positions // 2, seed=3)
        name = "bench-write" if with_features else "bench-write-base"
        rows = storage.rows(run_record(name, now, timeline, positions // 2))
        features = rows.features if with_features else None
        for _ in range(warmup):
            await queries.save_run(conn, rows.index, rows.preview, features)
        samples = []
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await queries.save_run(conn, rows.index, rows.preview, features)
            samples.append((time.perf_counter() - t) * 1000)
        return stats(samples, time.perf_counter() - start)
    finally:
        await conn.close()


async def time_bare_select(url: str, n: int, warmup: int) -> dict:
    conn = await asyncpg.connect(url)
    try:
        for _ in range(warmup):
            await run_reads.select_preview_row(conn, BIG_ID)
        samples = []
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            row = await run_reads.select_preview_row(conn, BIG_ID)
            samples.append((time.perf_counter() - t) * 1000)
            assert row is not None
        return stats(samples, time.perf_counter() - start)
    finally:
        await conn.close()


def benchmark(db_url: str, args, workdir: Path, seeded: dict) -> dict:
    upstream_url, upstream_server, upstream_thread = serve_in_thread(
        stub_app(args.run_positions, args.top_k)
    )
    backend = start_backend(db_url, upstream_url, workdir / "backend.log")
    url = backend.url
    results: dict[str, dict] = {}
    try:
        n, warm = args.iterations, max(5, args.iterations // 10)
        results["bare_select"] = asyncio.run(time_bare_select(db_url, n, warm))
        with httpx.Client(base_url=url, timeout=60) as client:
            base = f"/playground/activations/{BIG_ID}"
            cases = {
                "rows": ("GET", base + "/rows", {}),
                "rows_filtered": (
                    "GET",
                    base + "/rows",
                    {
                        "params": {
                            "segment": "output",
                            "rank_max": 5,
                            "token_start": 1100,
                            "token_end": 1900,
                        }
                    },
                ),
                "rows_feature": ("GET", base + "/rows", {"params": {"feature_id": 12345}}),
                "top_features": ("GET", base + "/top-features", {}),
                "top_features_output": (
                    "GET",
                    base + "/top-features",
                    {"params": {"segment": "output", "limit": 200}},
                ),
                "get_run": ("GET", base, {}),
                "runs": ("GET", "/playground/activations/runs", {"params": {"limit": 50}}),
                "summary": ("GET", "/playground/activations/summary", {}),
                **feature_cases(seeded),
                **compare_cases.cases(BIG_ID),
            }
            responses = {}
            for name, (method, path, kw) in cases.items():
                results[name], responses[name] = time_http(client, method, path, n, warm, **kw)
            compare_cases.add_throughput(results, responses)
            # A deep page of the listing, through a real cursor.
            cursor = None
            for _ in range(20):
                page = client.get(
                    "/playground/activations/runs",
                    params={"limit": 200} | ({"cursor": cursor} if cursor else {}),
                ).json()
                cursor = page["next_cursor"]
            results["runs_deep_cursor"], _ = time_http(
                client,
                "GET",
                "/playground/activations/runs",
                n,
                warm,
                params={"limit": 50, "cursor": cursor},
            )
            # One run, re-run by its owner each time (the write's update path).
            body = {"prompt": "bench", "request_id": "bench-run"}
            created = client.post("/playground/activations/run", json=body)
            created.raise_for_status()
            owner = {"X-Run-Owner": created.json()["owner_token"]}
            results["run"], responses = time_http(
                client, "POST", "/playground/activations/run", n, warm, json=body, headers=owner
            )
            overheads, db_ms = [], []
            for response in responses:
                t = response.json()["timings_ms"]
                overheads.append(t["total"] - t["engine"] - t["sae"])
                db_ms.append(t["db"])
            results["run"]["db_write_p50_ms"] = round(statistics.median(db_ms), 3)
            results["run"]["overhead_p50_ms"] = round(statistics.median(overheads), 3)
            results["run"]["overhead_p99_ms"] = round(
                sorted(overheads)[round(0.99 * (len(overheads) - 1))], 3
            )
        # Interleaved rounds, so load on the machine hits both alike.
        rounds = {"run_write_direct_before": [], "run_write_direct": []}
        for _ in range(3):
            for name in rounds:
                rounds[name].append(
                    asyncio.run(
                        time_direct_write(
                            db_url,
                            args.run_positions,
                            args.top_k,
                            n // 3,
                            warm,
                            with_features=name == "run_write_direct",
                        )
                    )
                )
        for name, parts in rounds.items():
            results[name] = merge_rounds(parts)
        results["runs_by_feature_page4"] = deep_feature_page(url, seeded, min(n, 30))
        # Metrics and logging: the run path observed vs bare (bench/observability.py).
        cost = observability.backend_cost(start_backend, db_url, upstream_url, workdir, n, warm)
        for name in ("observed", "bare"):
            side = cost[name]
            results[f"run_{name}"] = {
                "n": side["n"],
                "p50_ms": side["client_p50_ms"],
                "p99_ms": side["client_p50_ms"],
                "req_per_s": round(1000 / side["client_p50_ms"], 1),
                "overhead_p50_ms": side["overhead_p50_ms"],
            }
        results["run"]["observability_cost_p50_ms"] = cost["cost_client_p50_ms"]
        results["run"]["observability_overhead_cost_p50_ms"] = cost["cost_overhead_p50_ms"]
    finally:
        backend.stop(grace_s=30)
        upstream_server.should_exit = True
        upstream_thread.join(timeout=10)
    baseline = results["bare_select"]["p50_ms"]
    for r in results.values():
        r["ratio_to_bare_select"] = round(r["p50_ms"] / baseline, 2)
    return results


def print_table(results: dict, meta: dict) -> None:
    print(
        f"\nbackend bench: {meta['seeded_runs']:,} runs seeded; big run "
        f"{meta['big_positions']} positions x top-{meta['top_k']}; run endpoint "
        f"{meta['run_positions']} positions; {meta['iterations']} sequential requests each"
    )
    header = f"{'endpoint':<22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'x bare':>8}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<22}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['req_per_s']:>9.1f}"
            f"{r['ratio_to_bare_select']:>8.2f}"
        )
    write, before = results["run_write_direct"], results["run_write_direct_before"]
    print(
        f"run write with its feature row: p50 {write['p50_ms']:.3f} ms vs {before['p50_ms']:.3f} ms"
        f" without (same session): +{write['p50_ms'] - before['p50_ms']:.3f} ms"
    )
    st = meta["storage"]
    print(
        f"storage: a realistic run's index + preview rows"
        f" {st['run_tables_bytes_per_realistic_run']:,} B; feature tables"
        f" {st['feature_tables_bytes_per_run']:,} B per run; with them"
        f" {st['ratio_with_features']:.2f}x"
    )
    fm = meta["features"]
    print(
        f"features: common {fm['common_feature']} fired in {fm['common_feature_runs_fired']:,}"
        f" runs, rare {fm['rare_feature']} in {fm['rare_feature_runs_fired']:,}"
    )
    print(
        f"export: CSV {results['export_csv']['mb_per_s']} MB/s "
        f"({results['export_csv']['bytes']:,} B), JSON {results['export_json']['mb_per_s']} MB/s "
        f"({results['export_json']['bytes']:,} B)"
    )
    run = results["run"]
    print(
        f"run overhead (total - engine - sae, backend-side): p50 {run['overhead_p50_ms']:.3f} ms,"
        f" p99 {run['overhead_p99_ms']:.3f} ms (of which the Postgres write p50"
        f" {run['db_write_p50_ms']:.3f} ms)"
    )
    print(
        f"metrics + logging (observed vs bare backend, same run): client p50"
        f" +{run['observability_cost_p50_ms']:.3f} ms, overhead p50"
        f" +{run['observability_overhead_cost_p50_ms']:.3f} ms (target <= 0.3 ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--database-url", help="use this server (a fresh database is NOT made)")
    parser.add_argument("--runs", type=int, help="seeded runs (100000; --quick 2000)")
    parser.add_argument("--positions", type=int, help="big run positions (2048; --quick 256)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--run-positions", type=int, default=64, help="positions per `run` call")
    parser.add_argument("--iterations", type=int, help="requests per endpoint (300; --quick 30)")
    parser.add_argument("--out", type=Path, default=harness.RESULTS_DIR)
    args = parser.parse_args()
    args.runs = args.runs or (2_000 if args.quick else 100_000)
    args.positions = args.positions or (256 if args.quick else 2048)
    args.iterations = args.iterations or (30 if args.quick else 300)
    meta = {
        "seeded_runs": args.runs,
        "big_positions": args.positions,
        "top_k": args.top_k,
        "run_positions": args.run_positions,
        "iterations": args.iterations,
        "quick": args.quick,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "when": datetime.now(UTC).isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-backend-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # the embedded server may run as its own system user
        if args.database_url:
            results = run_all(args.database_url, args, workdir, meta)
        else:
            with embedded_postgres(workdir / "pg", delete_on_exit=True) as url:
                results = run_all(url, args, workdir, meta)
    print_table(results, meta)
    report = harness.report(
        "backend",
        config=vars(args) | {"out": str(args.out)},
        tables={"endpoints": [{"endpoint": name, **r} for name, r in results.items()]},
        summary=meta,
    )
    for path in harness.write_report(report, "quick" if args.quick else "", args.out):
        print(f"wrote {path}")
    return 0


def run_all(url: str, args, workdir: Path, meta: dict) -> dict:
    upgrade(url)
    t = time.perf_counter()
    seeded = asyncio.run(seed(url, args.runs, args.positions, args.top_k))
    meta["seed_s"] = round(time.perf_counter() - t, 1)
    print(f"seeded {args.runs:,} runs in {meta['seed_s']} s", flush=True)
    meta["features"] = {k: v for k, v in seeded.items() if k != "realistic_ids"}
    meta["storage"] = asyncio.run(storage_report(url, seeded["realistic_ids"]))
    meta["features"].update(asyncio.run(feature_counts(url, seeded)))
    return benchmark(url, args, workdir, seeded)


async def storage_report(url: str, realistic_ids: list[str]) -> dict:
    conn = await asyncpg.connect(url)
    try:
        return await feature_bench.storage_figures(conn, realistic_ids)
    finally:
        await conn.close()


async def feature_counts(url: str, seeded: dict) -> dict:
    """How often the two benchmarked features fired (they are the most and least fired)."""
    conn = await asyncpg.connect(url)
    try:
        return {
            f"{name}_runs_fired": await feature_seed_sql.runs_fired(
                conn, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER, seeded[name]
            )
            for name in ("common_feature", "rare_feature")
        }
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())

"""What metrics and logging cost: the same service started twice, observed (metrics on, INFO
logs in JSON: an access line and, for the backend, the run line per request) and bare (metrics
off, WARNING logs), measured in interleaved rounds so that a busy machine slows both alike.

    .venv/bin/python -m bench.backend [--quick]                      # rows run_observed, run_bare
    .venv/bin/python -m bench.observability micro [--iterations 300]   # x20 requests, in process
    .venv/bin/python -m bench.observability engine [--requests 64] [--concurrency 32]

backend: the run endpoint against instant stub upstreams and a real Postgres (bench.backend's
parts): client p50 and the backend's own overhead p50 (total - engine - sae), on vs off.
Target: <= 0.3 ms p50 per run. engine: output tokens/s at concurrency c through the HTTP API
on the tiny model (bench.engine's workload), on vs off. Target: <= 2 % of throughput.
micro: the per-request code alone, in process. The backend comparison runs inside
``bench.backend`` (``backend_cost``), which has the database and stub upstreams it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import harness
from common.services import Service

OBSERVED = {"PLAYGROUND_METRICS": "true", "PLAYGROUND_LOG_FORMAT": "json"}
BARE = {"PLAYGROUND_METRICS": "false", "PLAYGROUND_LOG_FORMAT": "text"}
ROUNDS = 5


# -- backend ----------------------------------------------------------------------------------


def _time_runs(url: str, run_id: str, n: int, warm: int) -> tuple[list[float], list[float]]:
    """``n`` re-runs of one run by its owner: client milliseconds and backend overheads."""
    body = {"prompt": "bench", "request_id": run_id}
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.post("/playground/activations/run", json=body)
        created.raise_for_status()
        owner = {"X-Run-Owner": created.json()["owner_token"]}
        for _ in range(warm):
            client.post("/playground/activations/run", json=body, headers=owner).raise_for_status()
        client_ms, overhead_ms = [], []
        for _ in range(n):
            t = time.perf_counter()
            answer = client.post("/playground/activations/run", json=body, headers=owner)
            client_ms.append((time.perf_counter() - t) * 1000)
            answer.raise_for_status()
            timings = answer.json()["timings_ms"]
            overhead_ms.append(timings["total"] - timings["engine"] - timings["sae"])
    return client_ms, overhead_ms


def backend_cost(
    start: Callable[..., Service], db_url: str, upstream_url: str, workdir: Path, n: int, warm: int
) -> dict:
    """Both backends at once on one database (``start``: bench.backend's starter, given the
    env and the log level); rounds alternate between them."""
    observed = start(db_url, upstream_url, workdir / "observed.log", env=OBSERVED, log_level="info")
    try:
        bare = start(db_url, upstream_url, workdir / "bare.log", env=BARE)
    except BaseException:
        observed.stop(grace_s=30)
        raise
    samples: dict[str, tuple[list[float], list[float]]] = {"observed": ([], []), "bare": ([], [])}
    try:
        per_round = max(1, n // ROUNDS)
        for i in range(ROUNDS):
            order = (("observed", observed), ("bare", bare))
            for name, service in order if i % 2 == 0 else reversed(order):
                run_id = f"bench-observability-{name}-{i}"
                client_ms, overhead_ms = _time_runs(service.url, run_id, per_round, warm)
                samples[name][0].extend(client_ms)
                samples[name][1].extend(overhead_ms)
    finally:
        observed.stop(grace_s=30)
        bare.stop(grace_s=30)
    out = {}
    for name, (client_ms, overhead_ms) in samples.items():
        out[name] = {
            "n": len(client_ms),
            "client_p50_ms": round(statistics.median(client_ms), 3),
            "overhead_p50_ms": round(statistics.median(overhead_ms), 3),
        }
    out["cost_client_p50_ms"] = round(
        out["observed"]["client_p50_ms"] - out["bare"]["client_p50_ms"], 3
    )
    out["cost_overhead_p50_ms"] = round(
        out["observed"]["overhead_p50_ms"] - out["bare"]["overhead_p50_ms"], 3
    )
    return out


# -- in process -------------------------------------------------------------------------------


def micro_cost(n: int) -> dict:
    """The per-request code alone, without the network or Postgres: one app with the request id
    and metrics middleware (and the run's metrics and INFO line, to a file), one without, the
    same trivial route, called through ASGI in alternating blocks."""
    import logging
    from contextlib import asynccontextmanager
    from datetime import UTC, datetime

    from fastapi import APIRouter

    from backend.activations.record import RunRecord, RunTimings
    from backend.metrics import BackendMetrics
    from common.app import create_service_app
    from common.logging_setup import configure_logging
    from common.metrics import new_registry

    @asynccontextmanager
    async def lifespan(app):
        yield

    record = RunRecord(
        request_id="bench",
        created_at=datetime.now(UTC),
        model_id="m",
        prompt="p",
        status="ok",
        generation=None,
        extraction=None,
        failure=None,
        timings=RunTimings(engine=1.0, sae=1.0, total=3.0),
    )

    def build(observed: bool):
        registry = new_registry() if observed else None
        metrics = BackendMetrics(registry) if registry is not None else None
        router = APIRouter()

        @router.post("/playground/activations/run")
        async def run() -> dict:
            if metrics is not None:
                metrics.stored(record, 1.0)
            return {"ok": True}

        return create_service_app(
            title="bench",
            lifespan=lifespan,
            routers=[router],
            max_body_bytes=1 << 20,
            metrics=registry,
        )

    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        configure_logging("bench", "info", "json")
        logging.getLogger().handlers[0].stream = log  # type: ignore[attr-defined]

        async def measure() -> dict[str, list[float]]:
            apps = {"observed": build(True), "bare": build(False)}
            out: dict[str, list[float]] = {name: [] for name in apps}
            clients = {
                name: httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://b")
                for name, app in apps.items()
            }
            try:
                for block in range(20):
                    for name, client in clients.items() if block % 2 else reversed(clients.items()):
                        for _ in range(n // 20):
                            t = time.perf_counter()
                            answer = await client.post("/playground/activations/run", json={})
                            out[name].append((time.perf_counter() - t) * 1000)
                            assert answer.status_code == 200
            finally:
                for client in clients.values():
                    await client.aclose()
            return out

        samples = asyncio.run(measure())
        logging.getLogger().handlers.clear()
    result = {name: round(statistics.median(ms), 4) for name, ms in samples.items()}
    return {
        "requests_per_side": n,
        "observed_p50_ms": result["observed"],
        "bare_p50_ms": result["bare"],
        "cost_p50_ms": round(result["observed"] - result["bare"], 4),
    }


# -- engine -----------------------------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every process below it (vLLM's
    engine core and workers): less sensitive than wall time to a machine shared with others."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0.0) for p in tree)


# -- engine (wall) --------------------------------------------------------------------------------


def run_engine(args) -> dict:
    from bench.engine import TINY_DIR, in_mode, run_http, workload
    from common.services import free_port
    from engine.tiny.build import build_tiny_model

    model = args.model or str(build_tiny_model(TINY_DIR))
    requests = in_mode(workload(args.requests, 0, quick=True), "defaults")
    services = {}
    for name, metrics, level in (("observed", "true", "info"), ("bare", "false", "warning")):
        env = {
            "ENGINE_METRICS": metrics,
            "PLAYGROUND_LOG_FORMAT": "json" if level == "info" else "text",
        }
        log = Path(tempfile.gettempdir()) / f"bench-observability-engine-{name}.log"
        cmd = ["engine", "--model", model, "--log-level", level]
        services[name] = Service(name, cmd, free_port(), log, env)
    try:
        for service in services.values():  # one at a time: both load the model on these CPUs
            service.start()
            service.wait_healthy(900)
        for service in services.values():  # warm-up
            asyncio.run(run_http(service.url, requests[:4], 4))
        walls: dict[str, list[float]] = {name: [] for name in services}
        cpus: dict[str, list[float]] = {name: [] for name in services}
        tokens: dict[str, int] = {}
        for i in range(args.repeats):
            order = list(services.items())
            for name, service in order if i % 2 == 0 else reversed(order):
                time.sleep(2.0)  # the other engine's CPU workers settle
                assert service.proc is not None
                cpu_before = tree_cpu_s(service.proc.pid)
                row, _ = asyncio.run(run_http(service.url, requests, args.concurrency))
                cpus[name].append(tree_cpu_s(service.proc.pid) - cpu_before)
                walls[name].append(row["wall_s"])
                tokens[name] = row["output_tokens"]
                print(f"  {name} round {i}: {row['output_tokens_per_s']} out tok/s", flush=True)
    finally:
        for service in services.values():
            service.stop(grace_s=60)
    out: dict = {"concurrency": args.concurrency, "requests": args.requests, "model": model}
    for name in services:
        best = min(walls[name])
        out[name] = {
            "walls_s": walls[name],
            "cpu_s": [round(c, 2) for c in cpus[name]],
            "median_cpu_ms_per_token": round(
                statistics.median(cpus[name]) / tokens[name] * 1000, 3
            ),
            "best_tokens_per_s": round(tokens[name] / best, 2),
            "median_tokens_per_s": round(tokens[name] / statistics.median(walls[name]), 2),
        }
    for stat in ("best_tokens_per_s", "median_tokens_per_s"):
        on, off = out["observed"][stat], out["bare"][stat]
        out[f"cost_pct_{stat}"] = round((off - on) / off * 100, 2)
    on, off = (out[n]["median_cpu_ms_per_token"] for n in ("observed", "bare"))
    out["cost_pct_cpu_per_token"] = round((on - off) / off * 100, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["micro", "engine"])
    parser.add_argument("--iterations", type=int, default=300, help="micro: x20 requests a side")
    parser.add_argument("--requests", type=int, default=64, help="engine: requests per round")
    parser.add_argument("--concurrency", type=int, default=32, help="engine: requests at once")
    parser.add_argument("--repeats", type=int, default=4, help="engine: rounds per side")
    parser.add_argument("--model", default=None, help="engine: HF id or folder (tiny model)")
    parser.add_argument("--out", type=Path, default=harness.RESULTS_DIR)
    args = parser.parse_args()
    result = micro_cost(args.iterations * 20) if args.part == "micro" else run_engine(args)
    print(result)
    report = harness.report(
        f"observability_{args.part}",
        config={k: str(v) for k, v in vars(args).items()},
        tables={},
        summary=result,
    )
    for path in harness.write_report(report, "", args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

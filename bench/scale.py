"""Scale benchmark: every read endpoint at 100k and at 1M runs in one run, the run write with
and without 0017's counters, and a batched prune under concurrent run writes.

    .venv/bin/python -m bench.scale            # 100,000 and 1,000,000 runs
    .venv/bin/python -m bench.scale --quick    # 2,000 and 20,000 runs (a few minutes)

One throwaway embedded Postgres (or --database-url: two databases are made on that server)
holds two databases seeded from one plan of N runs: run i was made i x (100 days / N) ago;
2% failed; three models (80/15/5%); ok runs of the last 10 days keep a realistic preview (160
positions x top-20, ~150 KB of JSON, stored as the run path stores it: JSONB + packed copy),
about 10% of all runs; older ok runs were pruned. ``small`` holds every 10th run of the plan
(so its N/10 runs span the same 100 days), ``large`` all N. Index rows go in by COPY (0017's
triggers count them as they land), previews are copied server-side from one stored run. Reads
go over HTTP to one `playground backend` per database (stub upstreams), sequentially,
alternating request by request between the two, so a drifting machine load weighs on both
alike.

Then, on ``large``: sizes from Postgres' size functions; the run write A/B (the same
save_run, durable, with the database downgraded one revision = the schema before this issue,
and upgraded again, in ABBA blocks; plus the server-side time of the statement from EXPLAIN
ANALYZE, which leaves out the commit's flush and the machine's noise); then
`playground prune --older-than 7d` (the previews of days 7-10, ~30% of them) while a writer
issues a run write every 5 ms (every 10th re-running a run the prune is after), recording
each write's latency and sampling whether it waits on a lock. Last, the maintained counts are
checked against brute force.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from backend.activations import aggregate, storage
from backend.activations import cursor as runs_cursor
from backend.activations.record import RunFailure, RunRecord
from backend.db import fold_sql, queries, run_reads
from backend.db.migrate import HEAD, down_revision_of, downgrade, upgrade
from bench import feature_seed_sql, harness
from bench import features as feature_bench
from bench import run_seed_sql as bulk
from bench.backend import (
    MODEL,
    make_timeline,
    run_record,
    serve_in_thread,
    start_backend,
    stub_app,
    time_http,
)
from bench.bulk_fold import BulkFold
from common.defaults import DEFAULT_SAE_ID, DEFAULT_SAE_LAYER
from common.pgembed import embedded_postgres

SPAN = timedelta(days=100)
PREVIEW_AGE = timedelta(days=10)
PRUNE_AGE = "7d"
MODELS = [(80, MODEL), (95, "meta-llama/Llama-3.1-70B-Instruct"), (100, "google/gemma-2-9b-it")]
TEMPLATE_ID = "bench-template"
BIG_ID = "bench-big"
FEATURE_POOL = 400  # distinct feature aggregates, dealt round the runs that keep a preview
TARGET_P50_MS = 10.0
TARGET_RATIO = 1.5


# -- the plan of seeded runs ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Templates:
    ok: queries.IndexRow
    failed: queries.IndexRow


def templates(now: datetime, positions: int, top_k: int) -> tuple[Templates, RunRecord]:
    realistic = run_record(
        TEMPLATE_ID, now, make_timeline(positions, top_k, positions // 2, seed=7), positions // 2
    )
    failed = dataclasses.replace(
        realistic,
        status="failed",
        generation=None,
        extraction=None,
        failure=RunFailure("upstream_timeout", "engine: past its timeout", "engine"),
    )
    return Templates(storage.index_row(realistic), storage.index_row(failed)), realistic


def planned_row(
    i: int, n_total: int, now: datetime, tpl: Templates
) -> tuple[queries.IndexRow, datetime | None, bool]:
    """Run i of the plan: (index row, pruned_at, keeps a preview)."""
    created = now - SPAN * (i / n_total)
    failed = (i * 2654435761) % 1000 < 20
    share = (i * 40503) % 100
    model = next(m for limit, m in MODELS if share < limit)
    fresh = now - created < PREVIEW_AGE
    base = tpl.failed if failed else tpl.ok
    row = dataclasses.replace(
        base,
        request_id=f"seed-{i:08d}",
        created_at=created,
        updated_at=created,
        model_id=model,
        has_preview=not failed and fresh,
    )
    pruned_at = created + timedelta(days=7) if not failed and not fresh else None
    return row, pruned_at, row.has_preview


class FeaturePool:
    """Feature aggregates of runs shaped like real ones (bench/features.py: 160 positions x
    top-20, heavy-tailed ids), generated once; run i of the plan gets aggregate i % size, so
    the small database's runs carry the same features as the same runs in the large one."""

    def __init__(self, size: int, now: datetime) -> None:
        gen = feature_bench.RunGenerator()
        self.rows = []
        for k, timeline in enumerate(gen.timelines(size)):
            record = gen.record(
                timeline,
                f"pool-{k}",
                now,
                MODEL,
                DEFAULT_SAE_ID,
                DEFAULT_SAE_LAYER,
                realistic=False,
            )
            row = storage.features_row(record)
            assert row is not None
            self.rows.append((row, aggregate.decode(row.data, row.n_positions)))

    def take(self, i: int, request_id: str) -> tuple[queries.FeaturesRow, object]:
        row, decoded = self.rows[i % len(self.rows)]
        return dataclasses.replace(row, request_id=request_id), decoded


async def seed_stage(
    url: str, n_total: int, tenth: bool, now: datetime, tpl: Templates, pool: FeaturePool
) -> dict:
    """Seed the plan's runs: every 10th (``tenth``) or all. A run that keeps a preview also
    gets a feature aggregate, and the explorer's per-feature tables are folded in bulk."""
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    seeded = previews = version = 0
    try:
        fold: BulkFold = await feature_bench.prepare_bulk(conn, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER)
        chunk = 50_000
        for start in range(0, n_total, chunk):
            rows, pruned, with_preview, feats = [], [], [], []
            for i in range(start, min(start + chunk, n_total)):
                if tenth and i % 10:
                    continue
                row, pruned_at, has_preview = planned_row(i, n_total, now, tpl)
                rows.append(row)
                pruned.append(pruned_at)
                if has_preview:
                    with_preview.append(row.request_id)
                    version += 1
                    features, decoded = pool.take(i, row.request_id)
                    feats.append((*dataclasses.astuple(features), version))
                    fold.add(row.request_id, version, decoded)
            await bulk.copy_index_rows(conn, rows, pruned)
            for k in range(0, len(with_preview), 500):
                previews += await bulk.copy_preview(conn, TEMPLATE_ID, with_preview[k : k + 500])
            columns = [*queries.FEATURES_COLUMNS, "version"]
            await feature_seed_sql.copy_rows(conn, "activation_run_features", columns, feats)
            await fold_sql.copy_members(conn, fold.take_members())
            seeded += len(rows)
            print(f"  seeded {seeded:,} runs, {previews:,} previews", flush=True)
        common, rare = fold.most_and_least_fired()
        await feature_bench.finish_bulk(conn, fold, version)
        search = await feature_bench.seed_labels(conn, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER)
        await bulk.vacuum_analyze(conn)
    finally:
        await conn.close()
    return {
        "runs": seeded,
        "previews": previews,
        "runs_with_features": version,
        "common_feature": common,
        "rare_feature": rare,
        "search": search,
        "seconds": round(time.perf_counter() - started),
    }


async def seed_fixed_runs(url: str, now: datetime, realistic: RunRecord, args) -> None:
    """The preview template (a realistic run, also a run of its own) and the big run."""
    half = args.big_positions // 2
    big = run_record(BIG_ID, now, make_timeline(args.big_positions, args.top_k, half, 2), half)
    conn = await asyncpg.connect(url)
    try:
        for record in (realistic, big):
            await queries.save_run(conn, storage.index_row(record), storage.preview_row(record))
    finally:
        await conn.close()


# -- reads ---------------------------------------------------------------------------------------


async def read_cases(url: str, preview_id: str) -> dict[str, tuple[str, dict]]:
    """Every read endpoint, with deep cursors at the middle of each listing."""
    conn = await asyncpg.connect(url)
    try:
        total = (await bulk.brute_counts(conn))["total_runs"]
        deep = {}
        for status, share in ((None, 1.0), ("ok", 0.98), ("failed", 0.02)):
            pos = await bulk.listing_position(conn, int(total * share) // 2, status)
            deep[status] = runs_cursor.encode(runs_cursor.RunsCursor(*pos))
    finally:
        await conn.close()
    base = "/playground/activations"
    cases: dict[str, tuple[str, dict]] = {"summary": (f"{base}/summary", {})}
    for status in (None, "ok", "failed"):
        tag = f"_{status}" if status else ""
        params = {"limit": 50} | ({"status": status} if status else {})
        cases[f"runs{tag}"] = (f"{base}/runs", params)
        cases[f"runs{tag}_deep"] = (f"{base}/runs", params | {"cursor": deep[status]})
    cases |= {
        "get_run": (f"{base}/{preview_id}", {}),
        "rows": (f"{base}/{preview_id}/rows", {}),
        "rows_filtered": (
            f"{base}/{preview_id}/rows",
            {"segment": "output", "rank_max": 5, "token_start": 90, "token_end": 150},
        ),
        "top_features": (f"{base}/{preview_id}/top-features", {}),
        "rows_big": (f"{base}/{BIG_ID}/rows", {}),
        "top_features_big": (f"{base}/{BIG_ID}/top-features", {}),
    }
    return cases


async def read_pages(url: str) -> dict[str, int]:
    """Pages each listing/summary statement touches, cursors at the middle of each listing."""
    conn = await asyncpg.connect(url)
    try:
        total = (await bulk.brute_counts(conn))["total_runs"]
        pages = {
            "summary": await bulk.pages_touched(conn, run_reads.SUMMARY_SQL),
            "runs_per_model": await bulk.pages_touched(conn, run_reads.RUNS_PER_MODEL_SQL, 20),
        }
        for status, share in ((None, 1.0), ("ok", 0.98), ("failed", 0.02)):
            tag = f"_{status}" if status else ""
            extra = [status] if status else []
            sql = run_reads.list_runs_sql(after=False, status=status is not None)
            pages[f"runs{tag}"] = await bulk.pages_touched(conn, sql, 51, *extra)
            pos = await bulk.listing_position(conn, int(total * share) // 2, status)
            sql = run_reads.list_runs_sql(after=True, status=status is not None)
            pages[f"runs{tag}_deep"] = await bulk.pages_touched(conn, sql, 51, *pos, *extra)
        return pages
    finally:
        await conn.close()


def feature_cases(backend_url: str, seeded: dict) -> dict[str, tuple[str, dict]]:
    """The feature explorer's reads: a common and a rare feature's page, the runs in which
    each fired (first page, and page 4 of the common one: past its leaderboard), label search."""
    base = f"/playground/features/{DEFAULT_SAE_ID}/{DEFAULT_SAE_LAYER}"
    runs = "/playground/activations/runs"
    by = {"sae_id": DEFAULT_SAE_ID, "sae_layer": DEFAULT_SAE_LAYER, "limit": 50}
    common, rare = seeded["common_feature"], seeded["rare_feature"]
    cursor = None
    with httpx.Client(base_url=backend_url, timeout=120) as client:
        for _ in range(3):
            params = by | {"feature_id": common} | ({"cursor": cursor} if cursor else {})
            page = client.get(runs, params=params)
            page.raise_for_status()
            cursor = page.json()["next_cursor"] or cursor
    return {
        "feature_common": (f"{base}/{common}", {}),
        "feature_rare": (f"{base}/{rare}", {}),
        "runs_by_feature": (runs, by | {"feature_id": common}),
        "runs_by_feature_deep": (runs, by | {"feature_id": common, "cursor": cursor}),
        "runs_by_feature_rare": (runs, by | {"feature_id": rare}),
        "feature_search": (
            "/playground/features/search",
            {"q": seeded["search"], "limit": 20},
        ),
    }


def time_reads(targets: dict[str, tuple[str, dict]], n: int, warmup: int) -> dict:
    """Each endpoint against each database, request by request in alternation (small, large,
    large, small, ...), so that a machine whose load drifts weighs on both alike."""
    labels = list(targets)
    clients = {label: httpx.Client(base_url=targets[label][0], timeout=60) for label in labels}
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    try:
        for name in targets[labels[0]][1]:
            for label in labels:
                path, params = targets[label][1][name]
                for _ in range(warmup):
                    clients[label].get(path, params=params).raise_for_status()
            for k in range(n):
                for label in labels if k % 2 == 0 else reversed(labels):
                    path, params = targets[label][1][name]
                    t = time.perf_counter()
                    response = clients[label].get(path, params=params)
                    samples[label].setdefault(name, []).append(time.perf_counter() - t)
                    response.raise_for_status()
    finally:
        for client in clients.values():
            client.close()
    return {
        label: {name: stats(s, sum(s)) for name, s in per.items()} for label, per in samples.items()
    }


# -- the run write, before and after 0017 ----------------------------------------------------------


def write_record(request_id: str, positions: int, top_k: int) -> RunRecord:
    half = positions // 2
    return run_record(
        request_id, datetime.now(UTC), make_timeline(positions, top_k, half, seed=3), half
    )


def stamped(rows: storage.RunRows, request_id: str) -> storage.RunRows:
    """The run's rows under another id, made now."""
    now = datetime.now(UTC)
    stamp = {"request_id": request_id, "created_at": now, "updated_at": now}
    return storage.RunRows(
        dataclasses.replace(rows.index, **stamp),
        dataclasses.replace(rows.preview, **stamp) if rows.preview else None,
        dataclasses.replace(rows.features, request_id=request_id) if rows.features else None,
    )


async def time_writes(url: str, tag: str, n: int, positions: int, top_k: int) -> list[float]:
    """``n`` new runs written as the run path writes them (index, preview, feature aggregate:
    save_run's one statement), durable, back to back; seconds each."""
    conn = await asyncpg.connect(url)
    try:
        template = storage.rows(write_record("w", positions, top_k))
        samples = []
        for k in range(n + 5):
            rows = stamped(template, f"write-{tag}-{k}")
            t = time.perf_counter()
            await queries.save_run(conn, rows.index, rows.preview, rows.features)
            if k >= 5:
                samples.append(time.perf_counter() - t)
        return samples
    finally:
        await conn.close()


async def explain_writes(url: str, tag: str, n: int, positions: int, top_k: int) -> dict:
    """The write's server-side time (EXPLAIN ANALYZE: execution, each trigger), new ids."""
    conn = await asyncpg.connect(url)
    try:
        template = storage.rows(write_record("w", positions, top_k))
        times: dict[str, list[float]] = {}
        for k in range(n):
            rows = stamped(template, f"explain-{tag}-{k}")
            assert rows.preview is not None
            measured = await bulk.explain_save_run(conn, rows.index, rows.preview, rows.features)
            for name, ms in measured.items():
                times.setdefault(name, []).append(ms)
        return {name: round(statistics.median(v), 4) for name, v in times.items()}
    finally:
        await conn.close()


def write_ab(url: str, args) -> dict:
    """save_run on the revision before 0017 and on head, in ABBA blocks (drift cancels)."""
    before_rev = down_revision_of(HEAD)
    samples: dict[str, list[float]] = {"before": [], "after": []}
    server: dict[str, list[dict]] = {"before": [], "after": []}
    current = "after"
    upgrade_s: list[float] = []
    blocks = ["before", "after", "after", "before"] * 2
    per_block = max(10, args.writes // 4)
    for k, phase in enumerate(blocks):
        if phase != current and phase == "before":
            downgrade(url, before_rev)
        elif phase != current:
            t = time.perf_counter()
            upgrade(url)  # builds the status index and backfills the counts
            upgrade_s.append(time.perf_counter() - t)
        current = phase
        samples[phase] += asyncio.run(
            time_writes(url, f"{phase}{k}", per_block, args.run_positions, args.top_k)
        )
        server[phase].append(
            asyncio.run(explain_writes(url, f"{phase}{k}", 50, args.run_positions, args.top_k))
        )
    if current != "after":
        upgrade(url)
    out: dict = {
        phase: stats(s, sum(s))
        | {
            "revision": before_rev if phase == "before" else HEAD,
            "server_ms_p50": {
                name: round(statistics.median(b[name] for b in server[phase]), 4)
                for name in server[phase][0]
            },
        }
        for phase, s in samples.items()
    }
    out["delta_p50_ms"] = round(out["after"]["p50_ms"] - out["before"]["p50_ms"], 3)
    out["upgrade_s_p50"] = round(statistics.median(upgrade_s), 2)
    out["server_delta_ms"] = round(
        out["after"]["server_ms_p50"]["execution"] - out["before"]["server_ms_p50"]["execution"],
        4,
    )
    return out


# -- prune under concurrent writes ---------------------------------------------------------------


async def prune_under_writes(url: str, args, workdir: Path) -> dict:
    conn = await asyncpg.connect(url)
    try:
        rerun_ids = await bulk.preview_ids_older_than(conn, 7 * 86400, 500)
    finally:
        await conn.close()
    template = storage.rows(write_record("w", args.run_positions, args.top_k))
    quiet, during, during_reruns = [], [], []
    pruning = asyncio.Event()
    stop = asyncio.Event()

    async def writer() -> None:
        conn = await asyncpg.connect(url, server_settings={"application_name": "bench-writer"})
        try:
            k = 0
            while not stop.is_set():
                k += 1
                # Every 10th write re-runs a run whose preview the prune is after.
                rerun = k % 10 == 0 and bool(rerun_ids)
                rid = rerun_ids.pop() if rerun else f"during-{k}"
                rows = stamped(template, rid)
                t = time.perf_counter()
                await queries.save_run(conn, rows.index, rows.preview, rows.features)
                took = time.perf_counter() - t
                if not pruning.is_set():
                    quiet.append(took)
                else:
                    (during_reruns if rerun else during).append(took)
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    lock_samples = [0, 0]  # [samples taken while pruning, of which the writer waited on a lock]

    async def lock_watch() -> None:
        conn = await asyncpg.connect(url)
        try:
            while not stop.is_set():
                if pruning.is_set():
                    lock_samples[0] += 1
                    lock_samples[1] += await bulk.sessions_waiting_on_locks(conn, "bench-writer")
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    task = asyncio.create_task(writer())
    watch = asyncio.create_task(lock_watch())
    await asyncio.sleep(10)
    conn = await asyncpg.connect(url)
    try:
        due = len(await bulk.preview_ids_older_than(conn, 7 * 86400, 10**9))
        wal_start = await bulk.wal_position(conn)
    finally:
        await conn.close()
    reruns_before = len(rerun_ids)
    cmd = [sys.executable, "-m", "playground.cli", "prune", "--older-than", PRUNE_AGE]
    cmd += ["--database-url", url, "--batch-size", str(args.batch_size)]
    pruning.set()
    started = time.perf_counter()
    path = os.pathsep.join(p for p in (str(harness.REPO), os.environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        env={**os.environ, "PYTHONPATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=(workdir / "prune.log").open("wb"),
    )
    out, _ = await proc.communicate()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await watch
    conn = await asyncpg.connect(url)
    try:
        wal = await bulk.wal_bytes_since(conn, wal_start)
    finally:
        await conn.close()
    if proc.returncode != 0:
        raise RuntimeError(f"prune failed: {(workdir / 'prune.log').read_text()[-2000:]}")
    line = out.decode().strip().splitlines()[-1]
    # "pruned N previews older than ... (B batches, S s, R/s)": the prune's own clock, which
    # leaves out the command's start-up (imports, connecting).
    found = re.match(r"pruned (\d+) .*\((\d+) batches, ([\d.]+) s, \d+/s\)", line)
    pruned, batches, seconds = int(found[1]), int(found[2]), float(found[3])
    return {
        "due": due,
        "pruned": pruned,
        "rerun_while_pruning": reruns_before - len(rerun_ids),
        "batch_size": args.batch_size,
        "batches": batches,
        "seconds": seconds,
        "per_s": round(pruned / seconds, 1),
        "command_seconds": round(elapsed, 2),
        "prune_line": line,
        "writes_quiet": with_max(quiet),
        "writes_during": with_max(during),
        "reruns_during": with_max(during_reruns),
        "wal_bytes_during": wal,
        "lock_watch_samples": lock_samples[0],
        "writer_waiting_on_lock_samples": lock_samples[1],
    }


def stats(samples_s: list[float], elapsed_s: float) -> dict:
    """Durations in seconds -> n, p50/p99 in ms (bench.harness) and requests per second."""
    return harness.timing_stats(samples_s) | {"req_per_s": round(len(samples_s) / elapsed_s, 1)}


def with_max(samples_s: list[float]) -> dict:
    return stats(samples_s, sum(samples_s) or 1.0) | {
        "max_ms": round(max(samples_s, default=0.0) * 1000, 3)
    }


# -- sizes ---------------------------------------------------------------------------------------


async def sizes(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        await bulk.vacuum_analyze(conn)
        counts = await bulk.brute_counts(conn)
        return {
            "runs": counts["total_runs"],
            "previews": await bulk.count_previews(conn),
            "relations": await bulk.relation_sizes(conn),
            "template_columns": await bulk.column_sizes(conn, TEMPLATE_ID),
        }
    finally:
        await conn.close()


def per_run(size: dict) -> dict:
    """Bytes per run of the index table (+ indexes) and per preview of the previews table."""
    rel = {r["name"]: r for r in size["relations"]}

    def total(prefix: str, kind: str | None = None) -> int:
        return sum(
            r["main_bytes"] + r["toast_bytes"]
            for name, r in rel.items()
            if name.startswith(prefix) and (kind is None or r["kind"] == kind)
        )

    return {
        "index_table_per_run": round(total("activation_run_index", "table") / size["runs"], 1),
        "index_indexes_per_run": round(total("activation_run_index", "index") / size["runs"], 1),
        "preview_per_preview": round(total("activation_run_previews") / size["previews"], 1),
        "counters_total_bytes": total("activation_run_counts") + total("activation_run_hours"),
    }


# -- the run -------------------------------------------------------------------------------------


async def check_counts(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        brute = await bulk.brute_counts(conn)
        kept = dict(await run_reads.summary(conn))
        exact = all(kept[k] == v for k, v in brute.items())
        return {"exact": exact, "brute_force": brute}
    finally:
        await conn.close()


def database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def on_server(url: str, action, *a) -> None:
    conn = await asyncpg.connect(url)
    try:
        await action(conn, *a)
    finally:
        await conn.close()


def run_all(server_url: str, args, workdir: Path) -> dict:
    """Two databases on one server: ``small`` (every 10th run of the plan) and ``large`` (all).
    Reads alternate between them; the rest runs on ``large``."""
    now = datetime.now(UTC)
    tpl, realistic = templates(now, args.preview_positions, args.top_k)
    pool = FeaturePool(FEATURE_POOL, now)
    names = {"small": "scale_small", "large": "scale_large"}
    urls = {label: database_url(server_url, name) for label, name in names.items()}
    tune = not args.database_url or args.tune_server
    results: dict = {"seed": {}}
    if tune:
        asyncio.run(on_server(server_url, bulk.bulk_load_mode, True))
    for label, name in names.items():
        asyncio.run(on_server(server_url, bulk.drop_database, name))
        asyncio.run(on_server(server_url, bulk.create_database, name))
        upgrade(urls[label])
        asyncio.run(seed_fixed_runs(urls[label], now, realistic, args))
        seeded = asyncio.run(seed_stage(urls[label], args.runs, label == "small", now, tpl, pool))
        results["seed"][label] = seeded
        print(f"seeded {label}: {seeded}", flush=True)
    if tune:
        asyncio.run(on_server(server_url, bulk.bulk_load_mode, False))

    upstream_url, upstream_server, upstream_thread = serve_in_thread(
        stub_app(args.run_positions, args.top_k)
    )
    backends = {}
    try:
        for label, url in urls.items():
            backends[label] = start_backend(url, upstream_url, workdir / f"backend-{label}.log")
        preview_id = asyncio.run(oldest_preview(urls["small"]))
        explorer = results["seed"]["small"]  # its features are in both databases
        targets = {
            label: (
                backends[label].url,
                asyncio.run(read_cases(urls[label], preview_id))
                | feature_cases(backends[label].url, explorer),
            )
            for label in urls
        }
        n, warm = args.iterations, max(5, args.iterations // 10)
        reads = time_reads(targets, n, warm)
        results["reads_small"], results["reads_large"] = reads["small"], reads["large"]
        results["pages"] = {label: asyncio.run(read_pages(url)) for label, url in urls.items()}
        with httpx.Client(base_url=backends["large"].url, timeout=60) as client:
            body = {"prompt": "bench", "request_id": "bench-run"}
            created = client.post("/playground/activations/run", json=body)
            created.raise_for_status()
            owner = {"X-Run-Owner": created.json()["owner_token"]}
            results["run_http"], _ = time_http(
                client, "POST", "/playground/activations/run", n, warm, json=body, headers=owner
            )
    finally:
        for backend in backends.values():
            backend.stop(grace_s=30)
        upstream_server.should_exit = True
        upstream_thread.join(timeout=10)

    asyncio.run(on_server(server_url, bulk.drop_database, names["small"]))  # its disk back
    large = urls["large"]
    results["sizes"] = asyncio.run(sizes(large))
    results["sizes"]["per_run"] = per_run(results["sizes"])
    results["write_ab"] = write_ab(large, args)
    results["prune"] = asyncio.run(prune_under_writes(large, args, workdir))
    results["counts_check"] = asyncio.run(check_counts(large))
    return results


async def oldest_preview(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return await bulk.one_preview_id(conn, newest=False)
    finally:
        await conn.close()


# -- tables and printing --------------------------------------------------------------------------

TARGETED = ("summary", "runs", "rows", "top_features", "feature", "runs_by_feature")


def read_rows(small: dict, large: dict) -> list[dict]:
    """One row per endpoint: both databases' p50/p99, the 1M/100k ratio, the issue's target
    (p50 <= 10 ms at 1M and <= 1.5x the 100k figure) where it applies."""
    rows = []
    for name, big in large.items():
        ratio = big["p50_ms"] / small[name]["p50_ms"]
        targeted = name.startswith(TARGETED) and not name.endswith("_big")
        ok = big["p50_ms"] <= TARGET_P50_MS and ratio <= TARGET_RATIO
        rows.append(
            {
                "endpoint": name,
                "small_p50_ms": small[name]["p50_ms"],
                "small_p99_ms": small[name]["p99_ms"],
                "large_p50_ms": big["p50_ms"],
                "large_p99_ms": big["p99_ms"],
                "ratio_p50": round(ratio, 2),
                "target": ("ok" if ok else "MISS") if targeted else "-",
            }
        )
    return rows


def read_columns(config: dict) -> list[harness.Column]:
    small, large = (f"{n // 1000:,}k" for n in config["runs"])
    return [
        harness.Column("endpoint", "endpoint"),
        harness.Column("small_p50_ms", f"{small} p50 ms", ".3f"),
        harness.Column("small_p99_ms", f"{small} p99 ms", ".3f"),
        harness.Column("large_p50_ms", f"{large} p50 ms", ".3f"),
        harness.Column("large_p99_ms", f"{large} p99 ms", ".3f"),
        harness.Column("ratio_p50", "ratio", ".2f"),
        harness.Column("target", "target"),
    ]


PAGE_COLUMNS = [
    harness.Column("statement", "statement"),
    harness.Column("small", "pages, small"),
    harness.Column("large", "pages, large"),
]


def page_rows(pages: dict) -> list[dict]:
    return [
        {"statement": name, "small": n, "large": pages["large"][name]}
        for name, n in pages["small"].items()
    ]


WRITE_COLUMNS = [
    harness.Column("writes", "run writes"),
    harness.Column("n", "n"),
    harness.Column("p50_ms", "p50 ms", ".3f"),
    harness.Column("p99_ms", "p99 ms", ".3f"),
    harness.Column("max_ms", "max ms", ".3f"),
]


def write_rows(results: dict) -> list[dict]:
    ab, prune = results["write_ab"], results["prune"]
    return [
        {"writes": f"before 0017 ({ab['before']['revision']})", **ab["before"]},
        {"writes": f"after ({ab['after']['revision']})", **ab["after"]},
        {"writes": "new runs, no prune running", **prune["writes_quiet"]},
        {"writes": "new runs, prune running", **prune["writes_during"]},
        {"writes": "re-runs of runs being pruned", **prune["reruns_during"]},
    ]


def print_summary(results: dict, config: dict) -> None:
    ab = results["write_ab"]
    print(
        f"\nrun write (save_run, {config['run_positions']} positions, durable): delta p50 "
        f"{ab['delta_p50_ms']:+.3f} ms after - before (ABBA blocks)"
    )
    before, after = ab["before"]["server_ms_p50"], ab["after"]["server_ms_p50"]
    triggers = ", ".join(f"{k} {v:.3f}" for k, v in after.items() if k != "execution")
    print(
        f"  server side (EXPLAIN ANALYZE, p50): before {before['execution']:.3f} ms, after "
        f"{after['execution']:.3f} ms (delta {ab['server_delta_ms']:+.3f}; triggers: {triggers})"
    )
    print(f"POST run over HTTP (stub upstreams): p50 {results['run_http']['p50_ms']:.3f} ms")
    print(f"upgrade to head at this size (status index + backfill): {ab['upgrade_s_p50']} s")
    p = results["prune"]
    print(
        f"prune --older-than {PRUNE_AGE} --batch-size {p['batch_size']}: {p['pruned']:,} of "
        f"{p['due']:,} due previews ({p['rerun_while_pruning']} re-run meanwhile) in "
        f"{p['seconds']} s = {p['per_s']:.0f}/s, {p['batches']} batches; WAL meanwhile "
        f"{p['wal_bytes_during'] / 2**20:,.0f} MiB"
    )
    print(
        f"  writer seen waiting on a lock in {p['writer_waiting_on_lock_samples']} of "
        f"{p['lock_watch_samples']} samples (every 10 ms) during the prune"
    )
    per = results["sizes"]["per_run"]
    print(
        f"bytes: index table {per['index_table_per_run']}/run + its indexes "
        f"{per['index_indexes_per_run']}/run; previews {per['preview_per_preview']}/preview; "
        f"counters {per['counters_total_bytes']:,} in all"
    )
    print(f"maintained counts exact after everything: {results['counts_check']['exact']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 runs")
    parser.add_argument("--database-url", help="use this server (two databases are made on it)")
    parser.add_argument(
        "--tune-server",
        action="store_true",
        help="with --database-url: fsync and full-page writes off while seeding (the embedded "
        "server always; only ever on a throwaway server)",
    )
    parser.add_argument("--runs", type=int, help="runs in the large database (1,000,000)")
    parser.add_argument("--preview-positions", type=int, default=160)
    parser.add_argument("--big-positions", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--run-positions", type=int, default=64, help="positions per write")
    parser.add_argument("--iterations", type=int, help="requests per endpoint (300; quick 50)")
    parser.add_argument("--writes", type=int, help="writes per A/B phase (300; quick 50)")
    parser.add_argument("--batch-size", type=int, default=100, help="prune batch size")
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/results)")
    args = parser.parse_args()
    args.runs = args.runs or (20_000 if args.quick else 1_000_000)
    args.iterations = args.iterations or (50 if args.quick else 300)
    args.writes = args.writes or (50 if args.quick else 300)
    config = {
        "runs": [args.runs // 10, args.runs],
        "preview_positions": args.preview_positions,
        "big_positions": args.big_positions,
        "top_k": args.top_k,
        "run_positions": args.run_positions,
        "iterations": args.iterations,
        "writes": args.writes,
        "batch_size": args.batch_size,
        "quick": args.quick,
    }
    load_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # the embedded server may run as its own system user
        if args.database_url:
            results = run_all(args.database_url, args, workdir)
        else:
            with embedded_postgres(workdir / "pg", delete_on_exit=True) as url:
                results = run_all(url, args, workdir)
    config["seconds"] = round(time.perf_counter() - started)
    machine = harness.machine(load_avg_start=load_start, load_avg_end=os.getloadavg())
    tables = {
        "reads": read_rows(results["reads_small"], results["reads_large"]),
        "pages": page_rows(results["pages"]),
        "writes": write_rows(results),
        "sizes": results["sizes"]["relations"],
    }
    harness.print_table(tables["reads"], read_columns(config), "reads (p50 target: 10 ms, 1.5x)")
    harness.print_table(tables["pages"], PAGE_COLUMNS, "pages each statement touches")
    harness.print_table(tables["writes"], WRITE_COLUMNS, "run writes")
    print_summary(results, config)
    summary = {
        key: results[key] for key in ("seed", "write_ab", "prune", "counts_check", "run_http")
    } | {"sizes": {k: v for k, v in results["sizes"].items() if k != "relations"}}
    report = harness.report(
        "scale", config=config, tables=tables, summary=summary, machine_info=machine
    )
    harness.write_report(report, tag="quick" if args.quick else "", out_dir=args.out)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

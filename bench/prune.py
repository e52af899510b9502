"""Prune under a writer, candidate by candidate: the worst concurrent run write and the prune's
rate for each way of pruning (server WAL settings x the prune's own pacing), in one run.

    .venv/bin/python -m bench.prune                      # 2,000 previews a round, 2 rounds
    .venv/bin/python -m bench.prune --previews 500 --rounds 1 --candidates baseline,pglz

One throwaway embedded Postgres. Each round seeds, for each candidate in turn, ``--previews``
realistic previews (160 positions x top-20, ~288 KB stored, copied server-side from one saved
run) 8 days old, takes a CHECKPOINT (so the prune's first change to each page writes its
full-page image, as in production, where previews are days old), then runs the prune as its own
process while a writer issues a run write every 5 ms (every 10th re-writing a run the prune is
after). Candidates alternate within a round, so a drifting machine load weighs on all alike;
the figures to compare are each candidate's against ``baseline`` of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from backend.activations import storage
from backend.db import bulk, queries
from backend.db.migrate import upgrade
from bench import harness
from bench.scale import TEMPLATE_ID, stamped, templates, with_max, write_record
from common.pgembed import embedded_postgres


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    server: dict[str, str]  # reloadable server settings
    batch_size: int = 100
    delete_chunk: int = 10
    pause_ms: float = 0.0
    async_commit: bool = True


_PGLZ = {"wal_compression": "pglz"}
_WALWRITER = {"wal_writer_delay": "'10ms'", "wal_writer_flush_after": "'256kB'"}
CANDIDATES = {
    c.name: c
    for c in (
        Candidate("baseline", {}),
        Candidate("pglz", _PGLZ),
        Candidate("sync", {}, async_commit=False),
        Candidate("pglz_sync", _PGLZ, async_commit=False),
        Candidate("walwriter", _WALWRITER),
        Candidate("pglz_walwriter", _PGLZ | _WALWRITER),
        Candidate("sync_chunk5", {}, delete_chunk=5, async_commit=False),
        Candidate("sync_chunk2", {}, delete_chunk=2, async_commit=False),
        Candidate("paced", {}, pause_ms=5),
    )
}
SETTINGS = sorted({k for c in CANDIDATES.values() for k in c.server})
AGE = timedelta(days=8)


async def apply_server(conn: asyncpg.Connection, settings: dict[str, str]) -> None:
    for name in SETTINGS:
        if name in settings:
            await conn.execute(f"ALTER SYSTEM SET {name} = {settings[name]}")
        else:
            await conn.execute(f"ALTER SYSTEM RESET {name}")
    await conn.execute("SELECT pg_reload_conf()")


async def seed(conn: asyncpg.Connection, tag: str, n: int, template: queries.IndexRow) -> list[str]:
    old = datetime.now(UTC) - AGE
    rows = [
        dataclasses.replace(
            template,
            request_id=f"{tag}-{i:06d}",
            created_at=old - timedelta(milliseconds=i),
            updated_at=old - timedelta(milliseconds=i),
            has_preview=True,
        )
        for i in range(n)
    ]
    await bulk.copy_index_rows(conn, rows, [None] * n)
    ids = [r.request_id for r in rows]
    for k in range(0, n, 200):
        await bulk.copy_preview(conn, TEMPLATE_ID, ids[k : k + 200])
    await conn.execute("CHECKPOINT")
    return ids


async def one_prune(url: str, cand: Candidate, due: list[str], workdir: Path) -> dict:
    rows = storage.rows(write_record("w", 64, 20))
    reruns = list(due[:: max(1, len(due) // 200)])
    quiet: list[float] = []
    during: list[float] = []
    during_reruns: list[float] = []
    pruning, stop = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        conn = await asyncpg.connect(url)
        try:
            k = 0
            while not stop.is_set():
                k += 1
                rerun = k % 10 == 0 and bool(reruns) and pruning.is_set()
                rid = reruns.pop() if rerun else f"{cand.name}-{time.time_ns()}"
                t = time.perf_counter()
                run = stamped(rows, rid)
                await queries.save_run(conn, run.index, run.preview, run.features)
                took = time.perf_counter() - t
                (during_reruns if rerun else during if pruning.is_set() else quiet).append(took)
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    task = asyncio.create_task(writer())
    await asyncio.sleep(2)
    conn = await asyncpg.connect(url)
    wal_start = await bulk.wal_position(conn)
    cmd = [sys.executable, "-m", "bench.prune", "--child", url, "--child-config"]
    cmd.append(json.dumps(dataclasses.asdict(cand)))
    path = os.pathsep.join(p for p in (str(harness.REPO), os.environ.get("PYTHONPATH")) if p)
    pruning.set()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        env={**os.environ, "PYTHONPATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=(workdir / f"prune-{cand.name}.log").open("wb"),
    )
    out, _ = await proc.communicate()
    stop.set()
    await task
    wal = await bulk.wal_bytes_since(conn, wal_start)
    await conn.close()
    if proc.returncode != 0:
        raise RuntimeError((workdir / f"prune-{cand.name}.log").read_text()[-2000:])
    done = json.loads(out.decode().strip().splitlines()[-1])
    both = with_max(during + during_reruns)
    return {
        "candidate": cand.name,
        "pruned": done["pruned"],
        "per_s": round(done["pruned"] / done["seconds"], 1),
        "quiet_p50_ms": with_max(quiet)["p50_ms"],
        "during_p50_ms": both["p50_ms"],
        "during_p99_ms": both["p99_ms"],
        "during_max_ms": both["max_ms"],
        "reruns_max_ms": with_max(during_reruns)["max_ms"],
        "writes_during": both["n"],
        "wal_kb_per_preview": round(wal / 1024 / max(done["pruned"], 1), 1),
    }


async def run_all(url: str, args, workdir: Path) -> list[dict]:
    now = datetime.now(UTC)
    tpl, realistic = templates(now, 160, 20)
    conn = await asyncpg.connect(url)
    try:
        await queries.save_run(conn, storage.index_row(realistic), storage.preview_row(realistic))
        await conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    out = []
    for r in range(args.rounds):
        for name in args.candidates:
            cand = CANDIDATES[name]
            conn = await asyncpg.connect(url)
            try:
                await apply_server(conn, cand.server)
                due = await seed(conn, f"r{r}-{name}", args.previews, tpl.ok)
            finally:
                await conn.close()
            row = {"round": r} | await one_prune(url, cand, due, workdir)
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


async def child(url: str, config: str) -> None:
    from backend.db.prune import prune_previews

    cand = Candidate(**json.loads(config))
    conn = await asyncpg.connect(url)
    try:
        done = await prune_previews(
            conn,
            AGE - timedelta(hours=1),
            batch_size=cand.batch_size,
            delete_chunk=cand.delete_chunk,
            pause_s=cand.pause_ms / 1000,
            async_commit=cand.async_commit,
        )
    finally:
        await conn.close()
    print(json.dumps({"pruned": done.pruned, "seconds": done.elapsed_s}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previews", type=int, default=2000, help="previews pruned per try")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/results)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.child_config))
        return 0
    args.candidates = args.candidates.split(",")
    unknown = set(args.candidates) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates: {sorted(unknown)}")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-prune-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # the embedded server may run as its own system user
        with embedded_postgres(workdir / "pg", delete_on_exit=True) as url:
            upgrade(url)
            rows = asyncio.run(run_all(url, args, workdir))
    machine = harness.machine(load_avg_start=load_start, load_avg_end=os.getloadavg())
    columns = [harness.Column(k, k) for k in rows[0]]
    harness.print_table(rows, columns, "prune under a writer every 5 ms")
    config = {"previews": args.previews, "rounds": args.rounds, "candidates": args.candidates}
    results = harness.report("prune", config=config, tables={"prune": rows}, machine_info=machine)
    harness.write_report(results, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

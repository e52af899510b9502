"""Load test of the real tiny stack, loopback only, bounded in time and count.

Starts embedded Postgres, the vLLM engine (tiny Llama-3.1), the SAE service (demo SAE) and the
backend, all on 127.0.0.1, with the staging limits on (each simulated client has its own
address through a trusted-proxy header). N clients loop for T seconds over run, rows,
top-features and features/extract; Postgres is stopped once in the middle and started again.
Prints requests, 2xx, 4xx by code, 503 by code, any other 5xx (must be 0), p50/p99 per route;
then re-reads every run that answered 200: each must be stored and equal (none lost).

    .venv/bin/python -m bench.load [--clients 6] [--seconds 60] [--pg-down-s 5] [--attack]

``--attack`` (bench/attack.py): no Postgres stop; the honest clients run alone, then beside 8
attackers holding unread maximum-size streams; prints both success rates and each attacker's
stored bytes against the daily quota.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import attack, harness
from bench.tiny_stack import tiny_stack
from common.pgembed import _pg_ctl

MAX_REQUESTS = 20_000  # a hard bound whatever the duration
PROMPTS = ["Name three colours.", "What is 2+2?", "Tell me about the sea.", "Hello there!"]


class Tally:
    def __init__(self) -> None:
        self.by_route: dict[str, list[float]] = collections.defaultdict(list)
        self.statuses: collections.Counter[tuple[int, str]] = collections.Counter()
        self.ok_runs: dict[str, dict] = {}
        self.count = 0
        self.run_statuses: collections.Counter[tuple[int, str]] = collections.Counter()

    def record(self, route: str, response: httpx.Response | None, seconds: float) -> None:
        self.count += 1
        self.by_route[route].append(seconds * 1000)
        if response is None:
            self.statuses[(0, "transport_error")] += 1
            return
        code = ""
        if response.status_code >= 400:
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "not_error_shape"
        self.statuses[(response.status_code, code)] += 1
        if route == "run":
            self.run_statuses[(response.status_code, code)] += 1


async def call(tally: Tally, http: httpx.AsyncClient, route: str, method: str, path: str, **kw):
    started = time.perf_counter()
    try:
        response = await http.request(method, path, **kw)
    except httpx.HTTPError:
        response = None
    tally.record(route, response, time.perf_counter() - started)
    return response


async def client_loop(
    index: int, base: str, deadline: float, tally: Tally, pace_s: float = 0.0
) -> None:
    """``pace_s``: at least this long between two runs' starts (0: as fast as answered)."""
    headers = {"x-client": f"10.9.{index // 250}.{index % 250}"}  # the client's own address
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        n, last = 0, float("-inf")
        while time.monotonic() < deadline and tally.count < MAX_REQUESTS:
            await asyncio.sleep(max(0.0, last + pace_s - time.monotonic()))
            last = time.monotonic()
            n += 1
            body = {"prompt": PROMPTS[n % len(PROMPTS)], "max_tokens": 8, "temperature": 0.0}
            run = await call(tally, http, "run", "POST", "/playground/activations/run", json=body)
            rid = None
            if run is not None and run.status_code in (429, 503):
                # A polite client: waits as told (at most 1 s here, to keep the load on).
                retry = float(run.headers.get("retry-after", "0.2") or 0.2)
                await asyncio.sleep(min(retry, 1.0))
            if run is not None and run.status_code == 200:
                answer = run.json()
                rid = answer["request_id"]
                tally.ok_runs[rid] = answer
            elif tally.ok_runs:
                rid = next(reversed(tally.ok_runs))
            if rid is None:
                await asyncio.sleep(0.2)
                continue
            await call(tally, http, "rows", "GET", f"/playground/activations/{rid}/rows")
            await call(
                tally, http, "top-features", "GET", f"/playground/activations/{rid}/top-features"
            )
            ids = tally.ok_runs[rid]["output"]["prompt_token_ids"][:32]
            await call(
                tally,
                http,
                "features/extract",
                "POST",
                "/playground/features/extract",
                json={"token_ids": ids, "top_k": 5},
            )


def restart_postgres(pgdata: Path, socket_dir: Path, system_user: str | None, down_s: float):
    _pg_ctl(pgdata, system_user, ["-w", "-m", "fast", "stop"])
    time.sleep(down_s)
    _pg_ctl(
        pgdata,
        system_user,
        ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"],
    )


async def verify(base: str, ok_runs: dict[str, dict]) -> tuple[int, list[str]]:
    bad = []
    async with httpx.AsyncClient(
        base_url=base, timeout=60, headers={"x-client": "verifier"}
    ) as http:
        for rid, posted in ok_runs.items():
            got = await http.get(f"/playground/activations/{rid}")
            if got.status_code != 200:
                bad.append(f"{rid}: {got.status_code}")
                continue
            stored = got.json()
            same = (
                stored["output"] == posted["output"]
                and stored["prompt"] == posted["prompt"]
                and (stored["preview"] or {}).get("feature_timeline")
                == (posted["preview"] or {}).get("feature_timeline")
            )
            if not same:
                bad.append(f"{rid}: differs")
    return len(ok_runs), bad


def report(tally: Tally, seconds: float, checked: int, bad: list[str]) -> dict:
    codes = {f"{s} {c}".strip(): n for (s, c), n in sorted(tally.statuses.items())}
    ok = sum(n for (s, _), n in tally.statuses.items() if 200 <= s < 300)
    # 503 overloaded (limits) and 503 service_unavailable (Postgres down) are expected answers.
    expected_503 = {"overloaded", "service_unavailable"}
    other_5xx = sum(
        n
        for (s, c), n in tally.statuses.items()
        if (s >= 500 and not (s == 503 and c in expected_503)) or s == 0
    )
    print(f"\n{tally.count} requests in {seconds:.0f} s; 2xx {ok}; other 5xx {other_5xx}")
    print(f"{'status code':<40} {'count':>7}")
    for label, n in codes.items():
        print(f"{label:<40} {n:>7}")
    print(f"\n{'route':<18} {'n':>6} {'p50 ms':>9} {'p99 ms':>9}")
    for route, times in sorted(tally.by_route.items()):
        times = sorted(times)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{route:<18} {len(times):>6} {statistics.median(times):>9.1f} {p99:>9.1f}")
    print(f"\nre-read {checked} runs that answered 200: {checked - len(bad)} stored and equal")
    for line in bad[:20]:
        print("  LOST/DIFFERENT:", line)
    return {
        "requests": tally.count,
        "ok": ok,
        "statuses": codes,
        "other_5xx": other_5xx,
        "runs_checked": checked,
        "runs_bad": bad,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6, choices=range(1, 65), metavar="N")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pg-down-s", type=float, default=5.0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--attack", action="store_true", help="honest clients, then + attackers")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 10.0), 600.0)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="playground-load-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    env = {"PLAYGROUND_CLIENT_IP_HEADER": "x-client", **(attack.ATTACK_ENV if args.attack else {})}
    with tiny_stack(root, "load-test-token", env) as stack:
        if args.attack:
            return attacked(stack, args, seconds)
        backend, db_url = stack.backend, stack.database_url
        socket_dir = Path(db_url.split("host=")[1].split("&")[0])
        system_user = "embedded_postgres" if _is_root() else None
        tally = Tally()

        async def drive() -> None:
            deadline = time.monotonic() + seconds
            loops = [client_loop(i, backend.url, deadline, tally) for i in range(args.clients)]
            tasks = [asyncio.ensure_future(loop) for loop in loops]
            await asyncio.sleep(seconds / 3)
            print(f"stopping postgres for {args.pg_down_s:.0f} s", flush=True)
            await asyncio.to_thread(
                restart_postgres, root / "pg", socket_dir, system_user, args.pg_down_s
            )
            print("postgres started again", flush=True)
            await asyncio.gather(*tasks)

        started = time.monotonic()
        asyncio.run(drive())
        elapsed = time.monotonic() - started
        checked, bad = asyncio.run(verify(backend.url, tally.ok_runs))
        result = report(tally, elapsed, checked, bad)
        harness.write_report(harness.report("load", config=vars(args), tables={}, summary=result))
        return 0 if result["other_5xx"] == 0 and not bad else 1


def attacked(stack, args: argparse.Namespace, seconds: float) -> int:
    """Honest clients alone for ``seconds / 2``, then beside the attackers as long."""
    base, phase_s = stack.backend.url, seconds / 2

    async def phase(with_attackers: bool) -> tuple[Tally, int, dict[str, int]]:
        tally, opened, held = Tally(), [0], []
        deadline = time.monotonic() + phase_s
        # Fresh honest addresses per phase: the first phase's rate windows do not carry over.
        first = 250 if with_attackers else 0
        pace = attack.HONEST_PACE_S
        loops = [client_loop(first + i, base, deadline, tally, pace) for i in range(args.clients)]
        if with_attackers:
            loops += [
                attack.attacker_loop(base, i, deadline, opened, held)
                for i in range(attack.ATTACKERS)
            ]
        await asyncio.gather(*loops)
        stored: dict[str, int] = {}
        if with_attackers:  # their runs finish and are stored, unread: then count the bytes
            await attack.drained(stack.database_url, timeout_s=180)
            stored = await attack.attacker_bytes(stack.database_url)
            for sock in held:
                sock.close()
        return tally, opened[0], stored

    calm, _, _ = asyncio.run(phase(False))
    stormy, opened, stored = asyncio.run(phase(True))
    rates = (attack.honest_rate(calm.run_statuses), attack.honest_rate(stormy.run_statuses))
    print("\n-- honest clients alone")
    alone = report(calm, phase_s, *asyncio.run(verify(base, calm.ok_runs)))
    print("\n-- honest clients beside the attackers")
    beside = report(stormy, phase_s, *asyncio.run(verify(base, stormy.ok_runs)))
    ratio = rates[1] / rates[0] if rates[0] else 0.0
    most = max(stored.values(), default=0)
    per_day = most * 86_400 / phase_s
    print(f"\nhonest run success: alone {rates[0]:.3f}, attacked {rates[1]:.3f}, ratio {ratio:.3f}")
    print(f"attackers opened {opened} unread maximum-size streams")
    print(
        f"stored per attacker: max {most} bytes in {phase_s:.0f} s (quota {attack.QUOTA_BYTES}/day;"
        f" unbounded it would be {per_day:.0f}/day); by attacker: {dict(sorted(stored.items()))}"
    )
    summary = {
        "honest_success_alone": rates[0],
        "honest_success_attacked": rates[1],
        "ratio": ratio,
        "other_5xx": alone["other_5xx"] + beside["other_5xx"],
        "attack_streams": opened,
        "attacker_bytes": stored,
        "quota_bytes": attack.QUOTA_BYTES,
        "runs_bad": alone["runs_bad"] + beside["runs_bad"],
    }
    harness.write_report(
        harness.report("load-attack", config=vars(args), tables={}, summary=summary)
    )
    bounded = most <= attack.QUOTA_BYTES + (8 << 20)  # the quota plus the one run that crossed it
    ok = ratio >= 0.9 and summary["other_5xx"] == 0 and not summary["runs_bad"] and bounded
    return 0 if ok else 1


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


if __name__ == "__main__":
    sys.exit(main())

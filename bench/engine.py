"""Benchmark the engine service: a fixed, seeded workload in three sampling modes side by side
(greedy; the page's defaults, temperature 0.7 and top-p 0.95; top-k alone), each through the
HTTP API and through vLLM's offline ``LLM.generate`` at several concurrency levels, with each
row's ratio to greedy at the same level and transport, plus naive HF ``generate`` (greedy, one
request at a time) as the floor. All in one run, on the same weights.

    .venv/bin/python -m bench.engine [--quick] [--model PATH_OR_ID] [--load-format dummy]
                                     [--modes greedy,defaults,top-k] [--sampler-patch on|off]

Default model: the tiny Llama-3.1 (built into .data/models/tiny-llama-3.1 if missing). On a GPU
host, ``--model meta-llama/Llama-3.1-8B-Instruct --load-format dummy`` runs the real 8B
architecture with random weights (no download of weights; the config and tokenizer still come
from the hub or the HF cache). Offline at concurrency c feeds ``LLM.generate`` c requests at a
time. Prints a table and writes JSON to bench/results/ (and $OUT when set).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

import httpx

from bench import engine_steer, harness
from bench.engine_http import MODES, best_of_modes, in_mode, run_http, summarize
from common.services import Service, free_port
from engine.generation.sampling_patch import PLUGIN_NAME
from engine.generation.settings import EngineSettings

TINY_DIR = harness.REPO / ".data" / "models" / "tiny-llama-3.1"
_VOCABULARY = (
    "the of and to in is was for on that with as by at from his her an were are which this be "
    "model token layer feature sparse autoencoder residual stream attention head vector "
    "prompt river mountain city music light number garden window paper coffee bridge story "
    "machine"
)
WORDS = _VOCABULARY.split()


def workload(n: int, seed: int, quick: bool) -> list[dict]:
    """Seeded prompts of varied length and varied output lengths, without sampling parameters."""
    rng = random.Random(seed)
    words_hi, out_lo, out_hi = (48, 4, 32) if quick else (400, 16, 256)
    requests = []
    for i in range(n):
        words = rng.randint(4, words_hi)
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        requests.append(
            {
                "prompt": f"{i}. {prompt}",
                "max_tokens": rng.randint(out_lo, out_hi),
                "request_id": f"bench-{i}",
            }
        )
    return requests


def sampler_patch_state() -> str:
    """Whether vLLM will load this project's sort-free top-k/top-p plugin here."""
    names = {e.name for e in entry_points(group="vllm.general_plugins")}
    if PLUGIN_NAME not in names:
        return "absent (entry point not installed: pip install -e . in this environment)"
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and PLUGIN_NAME not in allowed.split(","):
        return "off (VLLM_PLUGINS)"
    return "on"


def exclude_sampler_patch() -> None:
    """Leave the plugin out through vLLM's own allow-list, in this process and its children."""
    names = {e.name for e in entry_points(group="vllm.general_plugins")} - {PLUGIN_NAME}
    os.environ["VLLM_PLUGINS"] = ",".join(sorted(names))


# -- our HTTP service -------------------------------------------------------------------------


def start_service(args, log_path: Path) -> Service:
    engine_args = ["engine", "--model", args.model, "--load-format", args.load_format]
    engine_args += ["--max-model-len", str(args.max_model_len), "--log-level", "warning"]
    service = Service("engine", engine_args, free_port(), log_path)
    service.start()
    try:
        service.wait_healthy(900)
    except BaseException:
        service.stop()
        raise
    return service


async def prompt_ids_from_service(url: str, requests: list[dict]) -> list[list[int]]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        answers = await asyncio.gather(
            *(client.post("/tokenize", json={"text": r["prompt"], "chat": True}) for r in requests)
        )
    return [a.json()["token_ids"] for a in answers]


def run_http_levels(url, requests, modes, levels, repeats) -> tuple[list[dict], dict]:
    rows, outputs = [], {}
    for level in levels:
        best = best_of_modes(
            lambda mode, level=level: asyncio.run(run_http(url, in_mode(requests, mode), level)),
            modes,
            repeats,
        )
        for mode, (row, outs) in best.items():
            rows.append(row | {"transport": "http", "concurrency": level, "mode": mode})
            outputs[("http", level, mode)] = outs
            print(f"  http c={level} {mode}: {row['output_tokens_per_s']} out tok/s", flush=True)
    return rows, outputs


# -- baselines --------------------------------------------------------------------------------


def run_offline(settings, requests, prompt_ids, modes, levels, repeats):
    """vLLM's offline batch API on the same engine arguments, c requests at a time."""
    from transformers import GenerationConfig
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from engine.generation.runtime import engine_kwargs

    eos = GenerationConfig.from_pretrained(settings.model).eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    llm = LLM(**engine_kwargs(settings))
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]

    def params(mode: str) -> list:
        return [
            SamplingParams(
                max_tokens=r["max_tokens"],
                temperature=r["temperature"],
                top_p=r.get("top_p", 1.0),
                top_k=r.get("top_k", 0),
                stop_token_ids=eos,
            )
            for r in in_mode(requests, mode)
        ]

    by_mode = {mode: params(mode) for mode in modes}
    for mode in modes:  # warm-up, as the service had
        llm.generate(prompts[:2], by_mode[mode][:2], use_tqdm=False)

    def once(mode: str, level: int) -> tuple[dict, dict]:
        started = time.perf_counter()
        results = []
        for start in range(0, len(prompts), level):
            chunk = slice(start, start + level)
            results += llm.generate(prompts[chunk], by_mode[mode][chunk], use_tqdm=False)
        wall = time.perf_counter() - started
        outputs = {
            r["request_id"]: list(o.outputs[0].token_ids)
            for r, o in zip(requests, results, strict=True)
        }
        tokens = sum(len(ids) for ids in outputs.values())
        return summarize("offline", wall, [], tokens, len(requests)), outputs

    rows, outputs = [], {}
    for level in levels:
        best = best_of_modes(lambda mode, level=level: once(mode, level), modes, repeats)
        for mode, (row, outs) in best.items():
            rows.append(row | {"transport": "offline", "concurrency": level, "mode": mode})
            outputs[("offline", level, mode)] = outs
            print(f"  offline c={level} {mode}: {row['output_tokens_per_s']} tok/s", flush=True)
    shutdown = getattr(llm.llm_engine, "shutdown", None)
    if shutdown is not None:
        shutdown()
    return rows, outputs


def run_hf(args, requests: list[dict], prompt_ids: list[list[int]]) -> dict:
    """What users would otherwise write: HF generate, greedy, one request at a time."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    if args.load_format == "dummy":  # same architecture, random weights: same cost
        config = AutoConfig.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    model = model.to(device).eval()
    eos = GenerationConfig.from_pretrained(args.model).eos_token_id
    latencies, tokens = [], 0
    subset = list(zip(requests, prompt_ids, strict=True))[: args.hf_requests]
    started = time.perf_counter()
    for request, ids in subset:
        one = time.perf_counter()
        inputs = torch.tensor([ids], device=device)
        with torch.no_grad():
            out = model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=request["max_tokens"],
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0] if isinstance(eos, list) else eos,
            )
        tokens += out.shape[1] - len(ids)
        latencies.append(time.perf_counter() - one)
    wall = time.perf_counter() - started
    row = summarize("hf generate", wall, latencies, tokens, len(subset))
    return row | {"transport": "hf, one at a time", "concurrency": 1, "mode": "greedy"}


# -- main -------------------------------------------------------------------------------------

COLUMNS = [
    harness.Column("transport", "run"),
    harness.Column("concurrency", "c"),
    harness.Column("mode", "mode"),
    harness.Column("requests", "req"),
    harness.Column("requests_per_s", "req/s", ".2f"),
    harness.Column("output_tokens_per_s", "out tok/s", ".1f"),
    harness.Column("latency_p50_ms", "p50 ms", ".1f"),
    harness.Column("latency_p99_ms", "p99 ms", ".1f"),
    harness.Column("decode_ms_per_token_p50", "ms/token", ".1f"),
    harness.Column("vs_greedy", "vs greedy", ".2f"),
    harness.Column("vs_offline", "vs offline", ".2f"),
    harness.Column("vs_plain", "vs plain", ".2f"),
    harness.Column("vs_plain_cpu", "vs plain (CPU s)", ".2f"),
]


def add_ratios(rows: list[dict]) -> None:
    """Each row's throughput over greedy's at the same transport and level, and each HTTP row's
    over offline's at the same level and mode."""
    index = {(r["transport"], r["concurrency"], r["mode"]): r for r in rows}
    for row in rows:
        key = (row["transport"], row["concurrency"])
        greedy = index.get((*key, "greedy"))
        offline = index.get(("offline", row["concurrency"], row["mode"]))
        tps = row["output_tokens_per_s"]
        row["vs_greedy"] = round(tps / greedy["output_tokens_per_s"], 3) if greedy else None
        row["vs_offline"] = (
            round(tps / offline["output_tokens_per_s"], 3)
            if offline and row["transport"] == "http"
            else None
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF id or folder (default: tiny model)")
    parser.add_argument("--load-format", default="auto", help="vLLM load format (dummy: random)")
    parser.add_argument("--quick", action="store_true", help="small workload (CPU, CI)")
    parser.add_argument("--requests", type=int, default=None, help="default 256 (quick: 32)")
    parser.add_argument("--concurrency", default=None, help="comma list (default 1,16,64,256)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ",".join(MODES))
    parser.add_argument(
        "--sampler-patch",
        choices=["on", "off"],
        default="on",
        help="off: leave the sort-free top-k/top-p plugin out (VLLM_PLUGINS), for a baseline",
    )
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--hf-requests", type=int, default=None, help="HF baseline subset size")
    parser.add_argument("--repeats", type=int, default=2, help="best of N per row")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--skip-offline", action="store_true")
    parser.add_argument(
        "--steer-concurrency",
        type=int,
        default=32,
        help="level of the steering rows (plain, 1 in 32 steered, all steered); 0: none",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/results)")
    args = parser.parse_args()

    if args.model is None:
        from engine.tiny.build import build_tiny_model

        args.model = str(build_tiny_model(TINY_DIR))
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    if "greedy" not in modes:
        modes.insert(0, "greedy")  # the ratios' baseline
    if args.sampler_patch == "off":
        exclude_sampler_patch()
    patch = sampler_patch_state()
    print(f"sort-free top-k/top-p plugin: {patch}", flush=True)
    n = args.requests or (32 if args.quick else 256)
    levels = [
        int(c) for c in (args.concurrency or ("1,8,32" if args.quick else "1,16,64,256")).split(",")
    ]
    args.hf_requests = args.hf_requests or (8 if args.quick else 32)
    requests = workload(n, args.seed, args.quick)
    stamp = harness.stamp()

    log_path = Path(tempfile.gettempdir()) / f"bench-engine-{stamp}.log"
    print(f"engine log: {log_path}", flush=True)
    service = start_service(args, log_path)
    url = service.url
    try:
        health = httpx.get(url + "/health").json()
        prompt_ids = asyncio.run(prompt_ids_from_service(url, requests))
        for mode in modes:  # warm-up
            asyncio.run(run_http(url, in_mode(requests[:2], mode), 2))
        rows, outputs = run_http_levels(url, requests, modes, levels, args.repeats)
        steer_rows = (
            engine_steer.run_rows(
                url, service.proc.pid, requests, args.model, args.steer_concurrency, args.repeats
            )
            if args.steer_concurrency
            else []
        )
    finally:
        service.stop(grace_s=60)
    patch_in_engine = "sort-free top-k/top-p installed" in service.log_tail(10**7)

    settings = EngineSettings(
        model=args.model, load_format=args.load_format, max_model_len=args.max_model_len
    )
    # HF before vLLM enters this process (vLLM retunes torch threads and CPU affinity).
    hf_rows = [] if args.skip_hf else [run_hf(args, requests, prompt_ids)]
    if not args.skip_offline:
        offline_rows, offline_outputs = run_offline(
            settings, requests, prompt_ids, modes, levels, args.repeats
        )
        rows += offline_rows
        outputs |= offline_outputs
    rows += hf_rows
    add_ratios(rows)
    rows += steer_rows

    same_as_offline = {  # greedy only: sampled answers carry no seed
        f"c={level}": f"{sum(outs[k] == outputs[('offline', level, mode)][k] for k in outs)}"
        f"/{len(outs)}"
        for (transport, level, mode), outs in outputs.items()
        if transport == "http" and mode == "greedy" and ("offline", level, mode) in outputs
    }
    by_key = {(r["transport"], r["concurrency"], r["mode"]): r for r in rows}
    summary = {
        "defaults_vs_greedy": {
            f"{t} c={c}": r["vs_greedy"] for (t, c, m), r in by_key.items() if m == "defaults"
        },
        "top_k_vs_greedy": {
            f"{t} c={c}": r["vs_greedy"] for (t, c, m), r in by_key.items() if m == "top-k"
        },
        "greedy_http_outputs_equal_offline": same_as_offline,
        "steering_vs_plain": {r["transport"]: r["vs_plain"] for r in steer_rows},
        "steering_vs_plain_cpu": {r["transport"]: r["vs_plain_cpu"] for r in steer_rows},
    }
    config = {
        "model": args.model,
        "load_format": args.load_format,
        "device": health["device"],
        "sampler_patch": patch,
        "sampler_patch_in_engine_log": patch_in_engine,
        "modes": {mode: MODES[mode] for mode in modes},
        "requests": n,
        "seed": args.seed,
        "quick": args.quick,
        "concurrency": levels,
        "repeats_best_of": args.repeats,
        "offline_chunks": "offline at concurrency c = LLM.generate on c requests at a time",
        "prompt_tokens_total": sum(len(ids) for ids in prompt_ids),
        "max_tokens_total": sum(r["max_tokens"] for r in requests),
    }
    results = harness.report(
        "engine", config=config, tables={"rows": rows}, summary=summary, created_at=stamp
    )
    print()
    harness.print_table(rows, COLUMNS)
    print(f"\nsort-free top-k/top-p plugin: {patch} (engine log says installed: {patch_in_engine})")
    for name in (
        "defaults_vs_greedy",
        "top_k_vs_greedy",
        "greedy_http_outputs_equal_offline",
        "steering_vs_plain",
        "steering_vs_plain_cpu",
    ):
        print(f"{name}: {summary[name]}")
    harness.write_report(results, tag="quick" if args.quick else "", out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the SAE service's maths: extraction tokens/s, truncated vs full forward, batched vs
one request at a time. All figures in one run, on one machine, as ratios to a baseline measured
in the same run.

    .venv/bin/python bench/sae.py [--quick] [--full-size] [--device cpu|cuda]

Model: random weights, the real Llama-3.1-8B layer count (32) and a small hidden size (CPU), or
with ``--full-size`` the real 8B architecture in bf16 with a 32768-feature SAE (a GPU host).
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.sae.batching import EncodeJob, compute_batch  # noqa: E402
from engine.sae.encoder import SaeEncoder, SaeMeta, SaeWeights  # noqa: E402
from engine.sae.residual import ResidualModel  # noqa: E402

SMALL = {  # Llama-3.1-8B scaled in width only
    "hidden_size": 128,
    "intermediate_size": 448,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "d_sae": 1024,
}
FULL = {  # Llama-3.1-8B
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "d_sae": 32768,
}
LAYER = 16


def build_model(shape: dict, device: torch.device, dtype: torch.dtype) -> ResidualModel:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=128256,
        num_hidden_layers=32,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        **{k: v for k, v in shape.items() if k != "d_sae"},
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            base = LlamaModel(config)
    finally:
        torch.set_default_dtype(previous)
    return ResidualModel(base.eval(), device=device, dtype=dtype)


class OneSae:
    """Stands in for the registry: one random JumpReLU SAE at LAYER."""

    def __init__(self, d_in: int, d_sae: int, device, dtype):
        gen = torch.Generator().manual_seed(0)
        self.meta = SaeMeta(
            sae_id="bench",
            layer=LAYER,
            d_in=d_in,
            d_sae=d_sae,
            architecture="jumprelu",
            layout="saelens",
            folder=Path("."),
        )
        weights = SaeWeights(
            W_enc=torch.randn(d_in, d_sae, generator=gen) / d_in**0.5,
            b_enc=torch.zeros(d_sae),
            b_dec=torch.zeros(d_in),
            threshold=torch.full((d_sae,), 1.5),
        )
        self.enc = SaeEncoder(self.meta, weights, device=device, dtype=dtype)

    def encoder(self, _meta):
        return self.enc


def _once(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed(fn, device, repeats: int) -> float:
    """Best of ``repeats`` runs after one warm-up (the minimum is the least disturbed by other
    work on a shared machine)."""
    fn()
    return min(_once(fn, device) for _ in range(repeats))


def timed_pair(fn_a, fn_b, device, repeats: int) -> tuple[float, float]:
    """Best-of timings of two variants, interleaved so both see the same machine load."""
    fn_a()
    fn_b()
    a, b = [], []
    for _ in range(repeats):
        a.append(_once(fn_a, device))
        b.append(_once(fn_b, device))
    return min(a), min(b)


def random_ids(batch: int, length: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 128000, (batch, length), generator=gen).tolist()


def run(args) -> dict:
    device = torch.device(args.device)
    shape = FULL if args.full_size else SMALL
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    model = build_model(shape, device, dtype)
    sae = OneSae(shape["hidden_size"], shape["d_sae"], device, dtype)
    repeats = 3 if args.quick else 5
    chunk = 2048
    rows: dict[str, list[dict]] = {"extract": [], "truncation": [], "batching": []}

    def extract(token_lists, top_k=20):
        jobs = [EncodeJob(ids, sae.meta, top_k=top_k) for ids in token_lists]
        return compute_batch(model, sae, jobs, chunk)

    # 1. Extraction throughput (forward to LAYER + encode + topk), batch x length.
    batches = [1, 4] if args.quick else [1, 4, 16]
    lengths = [64, 256] if args.quick else [64, 256, 1024]
    for batch in batches:
        for length in lengths:
            ids = random_ids(batch, length, seed=batch * 7919 + length)
            seconds = timed(lambda ids=ids: extract(ids), device, repeats)
            rows["extract"].append(
                {
                    "batch": batch,
                    "seq_len": length,
                    "seconds": seconds,
                    "tokens_per_s": batch * length / seconds,
                }
            )

    # 2. Truncated forward (blocks 0..L) vs the full model's forward (output_hidden_states).
    t_batch, t_len = (2, 256) if args.quick else (4, 256)
    ids = torch.tensor(random_ids(t_batch, t_len, seed=1))
    with torch.inference_mode():
        for layer in [LAYER] if args.quick else [0, 8, LAYER, 31]:
            full_s, trunc_s = timed_pair(
                lambda: model.base(ids.to(device), output_hidden_states=True),
                lambda layer=layer: model.residuals(ids, {layer}),
                device,
                repeats,
            )
            rows["truncation"].append(
                {
                    "layer": layer,
                    "batch": t_batch,
                    "seq_len": t_len,
                    "full_s": full_s,
                    "truncated_s": trunc_s,
                    "speedup": full_s / trunc_s,
                    "ideal_speedup": model.n_layers / (layer + 1),
                }
            )

    # 3. Batched (one padded forward per length bucket + one encode) vs one at a time.
    n_requests = 8 if args.quick else 16
    gen = torch.Generator().manual_seed(2)
    mixes = {
        "equal 128": [128] * n_requests,
        "mixed 64..256": torch.randint(64, 257, (n_requests,), generator=gen).tolist(),
    }
    for label, lens in mixes.items():
        token_lists = [random_ids(1, n, seed=100 + i)[0] for i, n in enumerate(lens)]
        total = sum(lens)
        batched_s, single_s = timed_pair(
            lambda token_lists=token_lists: extract(token_lists),
            lambda token_lists=token_lists: [extract([t]) for t in token_lists],
            device,
            repeats,
        )
        rows["batching"].append(
            {
                "lengths": label,
                "requests": n_requests,
                "tokens": total,
                "batched_s": batched_s,
                "one_at_a_time_s": single_s,
                "batched_tokens_per_s": total / batched_s,
                "one_at_a_time_tokens_per_s": total / single_s,
                "speedup": single_s / batched_s,
            }
        )
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "model": {"layers": 32, **{k: v for k, v in shape.items() if k != "d_sae"}},
        "sae": {"layer": LAYER, "d_sae": shape["d_sae"], "architecture": "jumprelu"},
        "quick": args.quick,
        "full_size": args.full_size,
        "results": rows,
    }


def print_tables(report: dict) -> None:
    r = report["results"]
    sae = report["sae"]
    print(f"device {report['device']} ({report['device_name']}, {report['threads']} threads)")
    print(
        f"{report['dtype']}, model {report['model']}, d_sae {sae['d_sae']} at layer {sae['layer']}"
    )
    print("\nextraction (forward to layer 16 + encode + top-k 20)")
    print(f"{'batch':>5} {'seq_len':>7} {'seconds':>9} {'tokens/s':>10}")
    for row in r["extract"]:
        cells = f"{row['batch']:>5} {row['seq_len']:>7} {row['seconds']:>9.4f}"
        print(f"{cells} {row['tokens_per_s']:>10.0f}")
    print("\ntruncated forward vs full forward (32 blocks, output_hidden_states)")
    print(f"{'layer':>5} {'batch x len':>11} {'full s':>8} {'trunc s':>8} {'speed-up':>8}", end="")
    print(f" {'ideal':>6}")
    for row in r["truncation"]:
        print(
            f"{row['layer']:>5} {row['batch']:>5}x{row['seq_len']:<5} {row['full_s']:>8.4f}"
            f" {row['truncated_s']:>8.4f} {row['speedup']:>7.2f}x {row['ideal_speedup']:>5.2f}x"
        )
    print("\nbatched (one forward per length bucket, one encode) vs one request at a time")
    print(f"{'lengths':>14} {'requests':>8} {'tokens':>7} {'batched tok/s':>14}", end="")
    print(f" {'single tok/s':>13} {'speed-up':>8}")
    for row in r["batching"]:
        print(
            f"{row['lengths']:>14} {row['requests']:>8} {row['tokens']:>7}"
            f" {row['batched_tokens_per_s']:>14.0f} {row['one_at_a_time_tokens_per_s']:>13.0f}"
            f" {row['speedup']:>7.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller configurations")
    parser.add_argument(
        "--full-size", action="store_true", help="Llama-3.1-8B shape, d_sae 32768 (GPU)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.full_size and not args.device.startswith("cuda"):
        parser.error("--full-size needs a GPU (16 GB of bf16 weights); none here")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    print_tables(report)
    args.out.mkdir(parents=True, exist_ok=True)
    size = "full" if args.full_size else "small"
    kind = report["device"].split(":")[0]
    name = f"sae-{size}-{kind}{'-quick' if args.quick else ''}.json"
    (args.out / name).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

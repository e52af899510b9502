"""Benchmark the SAE service's maths: extraction tokens/s, truncated vs full forward, batched vs
one request at a time. All figures in one run, on one machine, as ratios to a baseline measured
in the same run.

    .venv/bin/python -m bench.sae [--quick] [--full-size] [--device cpu|cuda]

Model: random weights, the real Llama-3.1-8B layer count (32) and a small hidden size (CPU), or
with ``--full-size`` the real 8B architecture in bf16 with a 32768-feature SAE (a GPU host).
Prints tables and writes JSON to bench/results/ (and $OUT when set).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from bench import harness
from engine.sae.encode_batch import EncodeJob, compute_batch
from engine.sae.encoder import SaeEncoder, SaeMeta, SaeWeights
from engine.sae.residual import ResidualModel

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


def _sync(device: torch.device):
    """What the harness calls around each timed call, so queued GPU work is counted."""
    return torch.cuda.synchronize if device.type == "cuda" else None


def timed(fn, device, repeats: int) -> float:
    return harness.best_of(fn, repeats, sync=_sync(device))


def timed_pair(fn_a, fn_b, device, repeats: int) -> tuple[float, float]:
    return harness.best_of_pair(fn_a, fn_b, repeats, sync=_sync(device))


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
    config = {
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
        "repeats_best_of": repeats,
    }
    return harness.report("sae", config=config, tables=rows)


def print_tables(report: dict) -> None:
    c, t = report["config"], report["tables"]
    print(f"device {c['device']} ({c['device_name']}, {c['threads']} threads)")
    print(
        f"{c['dtype']}, model {c['model']}, d_sae {c['sae']['d_sae']} at layer {c['sae']['layer']}"
    )
    harness.print_table(
        t["extract"],
        [
            harness.Column("batch", "batch"),
            harness.Column("seq_len", "seq_len"),
            harness.Column("seconds", "seconds", ".4f"),
            harness.Column("tokens_per_s", "tokens/s", ".0f"),
        ],
        title=f"extraction (forward to layer {c['sae']['layer']} + encode + top-k 20)",
    )
    harness.print_table(
        t["truncation"],
        [
            harness.Column("layer", "layer"),
            harness.Column("batch", "batch"),
            harness.Column("seq_len", "seq_len"),
            harness.Column("full_s", "full s", ".4f"),
            harness.Column("truncated_s", "trunc s", ".4f"),
            harness.Column("speedup", "speed-up", ".2f"),
            harness.Column("ideal_speedup", "ideal", ".2f"),
        ],
        title="truncated forward vs full forward (32 blocks, output_hidden_states)",
    )
    harness.print_table(
        t["batching"],
        [
            harness.Column("lengths", "lengths"),
            harness.Column("requests", "requests"),
            harness.Column("tokens", "tokens"),
            harness.Column("batched_tokens_per_s", "batched tok/s", ".0f"),
            harness.Column("one_at_a_time_tokens_per_s", "single tok/s", ".0f"),
            harness.Column("speedup", "speed-up", ".2f"),
        ],
        title="batched (one forward per length bucket, one encode) vs one request at a time",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller configurations")
    parser.add_argument(
        "--full-size", action="store_true", help="Llama-3.1-8B shape, d_sae 32768 (GPU)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/results)")
    args = parser.parse_args(argv)
    if args.full_size and not args.device.startswith("cuda"):
        parser.error("--full-size needs a GPU (16 GB of bf16 weights); none here")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    print_tables(report)
    size = "full" if args.full_size else "small"
    kind = report["config"]["device"].split(":")[0]
    print()
    harness.write_report(
        report, tag=f"{size}-{kind}{'-quick' if args.quick else ''}", out_dir=args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

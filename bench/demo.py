"""Benchmark the readable demo's residual collection (what `train-sae` spends most of its
time on): tokens/s of the truncated forward in length-bucketed batches, float32 and bfloat16,
against the baseline the issue measured (every text padded to 128 tokens, full forward with
``output_hidden_states``). All variants in one run, interleaved, best of ``--repeat``.

    .venv/bin/python -m bench.demo [--tokens 8000] [--threads N] [--data-dir .data]

Needs the demo model (`playground build-demo`; built here on first use) and the corpus wheel.
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench import harness
from common.defaults import DEFAULT_DATA_DIR, DEMO_CACHE_SUBDIR
from engine.demo.corpus import fortunes_corpus
from engine.demo.model import ensure_demo_model
from engine.demo.residuals import collect_residuals, tokenize_texts
from engine.sae.residual import ResidualModel

LAYER = 15
QUIET = lambda _line: None  # noqa: E731


def padded_full_forward(model_dir: Path, sequences, batch: int = 16, width: int = 128) -> float:
    """The issue's measurement: texts padded (or cut) to 128, full HF forward, batch 16."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = sequences.token_ids
    started = time.perf_counter()
    real = 0
    with torch.inference_mode():
        for start in range(0, len(ids), batch):
            rows = ids[start : start + batch]
            x = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, seq in enumerate(rows):
                seq = seq[:width]
                x[r, : len(seq)] = torch.tensor(seq)
                mask[r, : len(seq)] = 1
                real += len(seq)
            model(input_ids=x, attention_mask=mask, output_hidden_states=True)
    return real / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = ensure_demo_model(args.data_dir, say=QUIET)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = fortunes_corpus(args.data_dir / DEMO_CACHE_SUBDIR, say=QUIET)
    sequences = tokenize_texts(tokenizer, texts, budget=args.tokens)
    models = {
        dtype: ResidualModel.load(
            str(model_dir), device=torch.device("cpu"), dtype=dtype, keep_layers=LAYER + 1
        )
        for dtype in (torch.float32, torch.bfloat16)
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for dtype, model in models.items():
            name = f"truncated, bucketed, {str(dtype).removeprefix('torch.')}"
            result = collect_residuals(model, sequences, LAYER, say=QUIET)
            best[name] = max(best.get(name, 0.0), result.tokens_per_s)
    best["full forward, padded to 128, float32 (issue's baseline)"] = padded_full_forward(
        model_dir, sequences
    )
    print(
        f"residual collection, layer {LAYER}, {sequences.tokens} tokens, "
        f"{torch.get_num_threads()} threads"
    )
    for name, value in best.items():
        print(f"  {name:58s} {value:8.0f} tokens/s")
    out = harness.RESULTS_DIR / "demo-residuals.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "tokens": sequences.tokens,
        "tokens_per_s": best,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

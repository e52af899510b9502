"""`playground build-tiny`: the tiny Llama-3.1 and its demo SAE, built offline."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

DEFAULT_MODEL_DIR = Path(".data/models/tiny-llama-3.1")
DEFAULT_SAE_DIR = Path(".data/saes/demo-l16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--sae-out", type=Path, default=DEFAULT_SAE_DIR, help="demo SAE folder")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from engine.tiny.build import build_tiny_model

    model_dir = build_tiny_model(args.out, seed=args.seed)
    print(f"tiny model: {model_dir}")
    try:
        demo = importlib.import_module("engine.sae.demo")
    except ModuleNotFoundError as exc:
        if exc.name not in ("engine.sae", "engine.sae.demo"):
            raise
        print("demo SAE: skipped (engine.sae.demo is not available)")
        return 0
    sae_dir = demo.build_demo_sae(model_dir, args.sae_out, seed=args.seed)
    print(f"demo SAE: {sae_dir}")
    return 0

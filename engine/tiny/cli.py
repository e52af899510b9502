"""`playground build-tiny`: the tiny Llama-3.1 and its demo SAE, built offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.defaults import DEFAULT_DATA_DIR, DEMO_SAE_LAYER, DEMO_SAE_SUBDIR, TINY_MODEL_SUBDIR

DEFAULT_MODEL_DIR = DEFAULT_DATA_DIR / TINY_MODEL_SUBDIR
DEFAULT_SAE_DIR = DEFAULT_DATA_DIR / DEMO_SAE_SUBDIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--sae-out", type=Path, default=DEFAULT_SAE_DIR, help="demo SAE folder")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from engine.sae.demo import build_demo_sae
    from engine.tiny.build import build_tiny_model

    model_dir = build_tiny_model(args.out, seed=args.seed)
    print(f"tiny model: {model_dir}")
    sae_dir = build_demo_sae(model_dir, args.sae_out, layer=DEMO_SAE_LAYER, seed=args.seed)
    print(f"demo SAE: {sae_dir}")
    return 0

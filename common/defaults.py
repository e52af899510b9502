"""The project's defaults, each defined once: the production model and SAE, where the local
builds live under the data folder, and where the page is served."""

from __future__ import annotations

from pathlib import Path

# Production: Llama-3.1-8B-Instruct (HF meta weights) with Llama Scope's layer-16 residual SAE
# (SAELens release llama_scope_lxr_8x, id l16r_8x).
DEFAULT_MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_SAE_ID = "llama_scope_lxr_8x"
DEFAULT_SAE_LAYER = 16

# Local builds, relative to the data folder (PLAYGROUND_DATA_DIR, default .data).
DEFAULT_DATA_DIR = Path(".data")
TINY_MODEL_SUBDIR = Path("models/tiny-llama-3.1")
DEMO_SAE_SUBDIR = Path("saes/demo-l16")
DEMO_SAE_LAYER = DEFAULT_SAE_LAYER

PAGE_PATH = "/playground/activations"

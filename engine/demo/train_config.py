"""What `playground train-sae` is asked (TrainConfig) and what it reports (TrainingStats, the
folder's training_stats.json); the training itself is train_sae.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from common.defaults import DEMO_TRAINED_SAE_ID
from engine.demo.trainer import TrainSettings

DEFAULT_TOKENS = 120_000


@dataclass(frozen=True)
class TrainConfig:
    """One training: the texts, the token budget, the SAE's settings and how it is written."""

    texts: list[str]
    corpus_name: str
    tokens: int = DEFAULT_TOKENS
    settings: TrainSettings = field(default_factory=TrainSettings)
    sae_id: str = DEMO_TRAINED_SAE_ID
    model_name: str | None = None
    demo: bool = True
    collect_dtype: str = "auto"
    batch_tokens: int = 4096
    weights_dtype: str = "float32"
    command: str = ""


@dataclass(frozen=True)
class TrainingStats:
    sae_id: str
    model: str
    layer: int
    d_in: int
    d_sae: int
    k: int
    corpus: str
    texts: int
    tokens: int  # run through the model (position 0 of each text included)
    tokens_train: int  # residuals trained on (position 0 left out)
    tokens_heldout: int
    sink_tokens_excluded: int  # residual norm > SINK_NORM_RATIO x median (residuals.py)
    collect_dtype: str
    torch_threads: int
    residual_tokens_per_s: float
    epochs: int
    steps: int
    fvu_train: float
    fvu_heldout: float
    l0: float
    dead_features: int  # never active on any collected token
    dead_fraction: float
    labelled_features: int
    label_precision: float  # see features.label_precision (held-out texts)
    label_precision_judged: int
    seconds: dict[str, float]
    model_source: str | None  # the model folder's build source (build-demo's marker), if any
    command: str  # how it was made


def resolve_collect_dtype(name: str) -> torch.dtype:
    """``auto``: bfloat16 where the CPU has native bf16 matmuls (AVX512-BF16/AMX: ~4x float32
    here), else float32. The SAE itself trains in float32."""
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16
    fast_bf16 = getattr(torch.backends.mkldnn, "is_available", lambda: False)() and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
    return torch.bfloat16 if fast_bf16 else torch.float32

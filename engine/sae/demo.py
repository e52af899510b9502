"""A demo SAE for a model with no released SAE (the tiny test model): random JumpReLU weights
in the SAELens layout, thresholds set from the model's own residuals so that a reasonable
number of features (about 3% of 512) fire per token. Marked demo: its features mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from engine.atomic_dir import atomic_directory

DEMO_SAE_ID = "demo_random"
DEMO_D_SAE = 512
FIRE_RATE = 0.03
SAMPLE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Sparse autoencoders split a model's residual stream into features.",
    "def add(a, b):\n    return a + b\n",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Write a haiku about the sea at night.",
    "1, 2, 3, 5, 8, 13, 21, 34, 55",
]


def build_demo_sae(model_dir: Path, out_dir: Path, *, layer: int = 16, seed: int = 0) -> Path:
    """Write the demo SAE for ``model_dir``'s residual stream at ``layer`` to ``out_dir``
    (idempotent: a complete folder is reused). Returns ``out_dir``."""
    import torch
    from transformers import AutoTokenizer

    from engine.sae.residual import ResidualModel
    from engine.sae.saelens_files import SAELENS_CFG, SAELENS_WEIGHTS, saelens_cfg, write_saelens

    out_dir = Path(out_dir)
    if (out_dir / SAELENS_CFG).is_file() and (out_dir / SAELENS_WEIGHTS).is_file():
        return out_dir
    cpu = torch.device("cpu")
    model = ResidualModel.load(str(model_dir), device=cpu, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    resid = torch.cat(
        [
            model.residuals(torch.tensor([tokenizer(text)["input_ids"]]), {layer})[layer][0]
            for text in SAMPLE_TEXTS
        ]
    ).double()
    resid = torch.unique(resid, dim=0)  # BOS starts every text: one copy of its residual
    d_in = resid.shape[1]
    gen = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(DEMO_D_SAE, d_in, generator=gen, dtype=torch.float64)
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    w_enc = w_dec.T.clone() / resid.norm(dim=-1).mean()  # pre-activations of order 1
    b_dec = resid.mean(dim=0)
    b_enc = torch.zeros(DEMO_D_SAE, dtype=torch.float64)
    pre = (resid - b_dec) @ w_enc + b_enc
    # Midway between two adjacent sample values near the quantile: no sample sits on it.
    ordered = torch.sort(pre, dim=0).values
    m = round((1 - FIRE_RATE) * pre.shape[0])
    threshold = ((ordered[m - 1] + ordered[m]) / 2).clamp(min=1e-3)
    tensors = {
        "W_enc": w_enc,
        "W_dec": w_dec,
        "b_enc": b_enc,
        "b_dec": b_dec,
        "threshold": threshold,
    }
    cfg = saelens_cfg(
        architecture="jumprelu",
        d_in=d_in,
        d_sae=DEMO_D_SAE,
        layer=layer,
        model_name=str(model_dir),
        prepend_bos=True,
        sae_id=DEMO_SAE_ID,
        demo=True,
        description=f"DEMO: random JumpReLU SAE (seed {seed}) at layer {layer}; "
        "features have no meaning",
    )
    with atomic_directory(out_dir) as staging:
        write_saelens(staging, tensors, cfg)
    return out_dir

"""The committed demo SAE's held-out top-20 activations in their windows, as `train-sae` computes
them (same texts, order, token budget and split), written for the label precision test
(tests/engine/demo/data/demo_l15_heldout_top.json.xz: ``{feature: [[tokens], index, value]}``).

    python -m bench.demo_heldout_top <model folder from build-demo> <wheel cache> <out.json.xz>

About a minute on one CPU thread (10k held-out tokens through 16 layers of SmolLM2-135M);
rerun on 2026-12-04 it wrote the committed file byte for byte.
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from engine.demo import features
from engine.demo.corpus import fortunes_corpus
from engine.demo.residuals import Sequences, collect_residuals, drop_sinks, tokenize_texts
from engine.demo.train_sae import COMMITTED_SAE_DIR, DEFAULT_TOKENS, HELDOUT_FRACTION
from engine.demo.trainer import TopKSae, TrainSettings
from engine.sae.residual import ResidualModel
from engine.sae.tokens import TokenTable


def main(model_dir: str, cache_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    texts = fortunes_corpus(Path(cache_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    table = TokenTable(tokenizer)
    seqs = tokenize_texts(tokenizer, texts, budget=DEFAULT_TOKENS, seed=TrainSettings().seed)
    first = len(seqs.token_ids) - max(1, round(HELDOUT_FRACTION * len(seqs.token_ids)))
    heldout = Sequences(seqs.token_ids[first:], seqs.chat[first:])
    model = ResidualModel.load(
        model_dir, device=torch.device("cpu"), dtype=torch.bfloat16, keep_layers=16
    )
    residuals, _ = drop_sinks(collect_residuals(model, heldout, 15))
    w = {
        k: v.float()
        for k, v in load_file(str(COMMITTED_SAE_DIR / "sae_weights.safetensors")).items()
    }
    sae = TopKSae(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], k=16)
    top = features.top_activations(
        features.encode_all(sae, residuals.acts), sae.d_sae, features.LABEL_TOP_N
    )
    seq, pos = residuals.seq.numpy(), residuals.pos.numpy()
    result = {}
    for f in range(sae.d_sae):
        rows = []
        for row, value in top.of(f):
            ids = heldout.token_ids[int(seq[row])]
            p = int(pos[row])
            start = max(0, p - features.CONTEXT_BEFORE)
            end = min(len(ids), p + features.CONTEXT_AFTER + 1)
            tokens = [table.text([t])[0] for t in ids[start:end]]
            rows.append([tokens, p - start, round(float(value), 3)])
        result[str(f)] = rows
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    Path(out).write_bytes(lzma.compress(text.encode("utf-8"), preset=9))


if __name__ == "__main__":
    main(*sys.argv[1:4])

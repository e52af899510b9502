"""Fixtures for the SAE service tests: the full HF model as the independent reference, sample
token sequences, a suite of random SAEs in every layout and architecture, and one SAE service
(create_app served over real HTTP) serving them all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.engine.sae.builders import (
    EXAMPLES_JSONL,
    RefSae,
    llama_scope_view,
    random_sae,
    separated_threshold,
    write_llama_scope,
    write_saelens,
)
from tests.support.servers import serve_app

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Sparse autoencoders find features in the residual stream of a language model.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Hi",
    "Paris, Berlin, Madrid, Rome, Lisbon, Vienna, Prague, Warsaw, Budapest, Athens.",
]


class FullModel:
    """The full HF model; residuals via ``output_hidden_states=True`` (independent of the
    service's truncated forward)."""

    def __init__(self, model_dir: Path):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.n_layers = self.model.config.num_hidden_layers

    @torch.no_grad()
    def resid(self, token_ids: list[int], layer: int) -> torch.Tensor:
        """Residual after block ``layer`` [T, d]: ``hidden_states[layer + 1]``, except for the
        last block, whose HF hidden state has the final norm applied; there, the block's own
        output is taken with a forward hook."""
        ids = torch.tensor([token_ids])
        if layer < self.n_layers - 1:
            return self.model(ids, output_hidden_states=True).hidden_states[layer + 1][0]
        captured = {}
        hook = self.model.model.layers[layer].register_forward_hook(
            lambda _m, _i, out: captured.setdefault("x", out[0] if isinstance(out, tuple) else out)
        )
        try:
            self.model(ids)
        finally:
            hook.remove()
        return captured["x"][0]


@pytest.fixture(scope="session")
def full_model(tiny_model_dir) -> FullModel:
    return FullModel(tiny_model_dir)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def sequences(tokenizer) -> list[list[int]]:
    seqs = [tokenizer(text)["input_ids"] for text in TEXTS]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three colours."}], add_generation_prompt=True
    )
    chat = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "keys") else chat
    return [*seqs, [*chat, 4438, 11, 6437, 13, 128009]]


@dataclass
class SuiteSae:
    sae_id: str
    layer: int
    ref: RefSae
    folder: Path


@pytest.fixture(scope="session")
def sae_suite(tmp_path_factory, full_model, sequences) -> dict[str, SuiteSae]:
    root = tmp_path_factory.mktemp("sae-suite")

    def sample(layer: int) -> torch.Tensor:
        # Unique rows: every sequence starts with BOS, whose residual is the same each time.
        return torch.unique(torch.cat([full_model.resid(s, layer) for s in sequences]), dim=0)

    suite: dict[str, SuiteSae] = {}

    def add(name, sae_id, layer, ref, folder):
        suite[name] = SuiteSae(sae_id, layer, ref, folder)

    jump = random_sae("jumprelu", sample(16), seed=1)
    add(
        "jumprelu",
        "test_jumprelu",
        16,
        jump,
        write_saelens(root / "jump16", jump, layer=16, sae_id="test_jumprelu"),
    )
    (root / "jump16" / "labels.json").write_text(json.dumps({"3": "feature three", "7": "seven"}))
    (root / "jump16" / "feature_examples.jsonl").write_text(
        "\n".join(json.dumps(line) for line in EXAMPLES_JSONL) + "\n"
    )
    relu = random_sae("relu", sample(0), seed=2)
    add(
        "relu",
        "test_relu",
        0,
        relu,
        write_saelens(root / "relu0", relu, layer=0, sae_id="test_relu"),
    )
    topk = random_sae("topk", sample(5), seed=3)
    add(
        "topk",
        "test_topk",
        5,
        topk,
        write_saelens(root / "topk5", topk, layer=5, sae_id="test_topk"),
    )
    last = random_sae("topk", sample(31), seed=4, k=20)
    add(
        "topk_last",
        "test_topk",
        31,
        last,
        write_saelens(root / "topk31", last, layer=31, sae_id="test_topk"),
    )
    rescale = random_sae("jumprelu", sample(10), seed=5, normalize="constant_norm_rescale")
    # thresholds for rescaled inputs
    x = sample(10).double()
    x = x * 8.0 / x.norm(dim=-1, keepdim=True)
    rescale.threshold = separated_threshold(
        (x - rescale.b_dec) @ rescale.W_enc + rescale.b_enc, 0.08
    )
    add(
        "rescale",
        "test_rescale",
        10,
        rescale,
        write_saelens(root / "rescale10", rescale, layer=10, sae_id="test_rescale"),
    )

    # Llama Scope release folder with two layers; and the same weights in the SAELens layout.
    resid16 = sample(16)
    avg = float(resid16.double().norm(dim=-1).mean())
    raw = random_sae("relu", resid16 * (64**0.5 / avg), seed=6, apply_b_dec_to_input=False)
    scope = llama_scope_view(raw, jump_relu_threshold=0.05, average_norm=avg)
    write_llama_scope(
        root / "release" / "Llama3_1-8B-Base-L16R-8x",
        raw,
        layer=16,
        jump_relu_threshold=0.05,
        average_norm=avg,
    )
    add("scope", "llama_scope_lxr_8x", 16, scope, root / "release" / "Llama3_1-8B-Base-L16R-8x")
    raw3 = random_sae("relu", sample(3), seed=7, apply_b_dec_to_input=False)
    avg3 = float(sample(3).double().norm(dim=-1).mean())
    write_llama_scope(
        root / "release" / "Llama3_1-8B-Base-L3R-8x",
        raw3,
        layer=3,
        jump_relu_threshold=0.05,
        average_norm=avg3,
    )
    add(
        "scope3",
        "llama_scope_lxr_8x",
        3,
        llama_scope_view(raw3, jump_relu_threshold=0.05, average_norm=avg3),
        root / "release" / "Llama3_1-8B-Base-L3R-8x",
    )
    add(
        "scope_twin",
        "scope_twin",
        16,
        scope,
        write_saelens(root / "twin16", scope, layer=16, sae_id="scope_twin"),
    )
    return suite


@pytest.fixture(scope="session")
def broken_sae_dir(sae_suite) -> Path:
    """Readable metadata, unreadable weights: fails only when first used."""
    src = sae_suite["relu"].folder
    folder = src.parent / "broken2"
    folder.mkdir(exist_ok=True)
    cfg = json.loads((src / "cfg.json").read_text())
    cfg.update(sae_id="test_broken", metadata={"hook_name": "blocks.2.hook_resid_post"})
    (folder / "cfg.json").write_text(json.dumps(cfg))
    (folder / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.fixture(scope="session")
def suite_dirs(sae_suite) -> list[Path]:
    release = sae_suite["scope"].folder.parent
    dirs = [
        s.folder
        for name, s in sae_suite.items()
        if not name.startswith("scope") or name == "scope_twin"
    ]
    return [*dirs, release]


@pytest.fixture(scope="session")
def sae_service_url(tiny_model_dir, suite_dirs, broken_sae_dir):
    """One SAE service (in-process uvicorn, real HTTP) serving the whole suite; an LRU of 3
    so that serving 8 SAEs exercises eviction and reloading."""
    from engine.sae.app import create_app
    from engine.sae.settings import Settings

    settings = Settings(
        model=str(tiny_model_dir),
        sae_dirs=[*suite_dirs, broken_sae_dir],
        max_loaded_saes=3,
        max_sequence_tokens=512,
        batch_wait_ms=5,
    )
    with serve_app(create_app(settings)) as url:
        yield url

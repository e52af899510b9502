"""Build, offline, the tiny Llama-3.1 used by tests and the local demo.

The architecture is Llama-3.1-8B's scaled in width only: 32 decoder layers (so that "layer 16"
means what it means in production), hidden size 64, 2 query heads of head_dim 32 (vLLM's CPU
attention needs head_dim >= 32), 1 KV head (GQA like the real model), vocab 128256, llama3 rope
scaling. Weights are random; the tokenizer is the real Llama-3 BPE (from Meta's `llama_models`
package) converted to an HF `tokenizer.json`, with the Llama-3.1 special tokens and chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.atomic_dir import atomic_directory
from engine.tiny.chat_template import LLAMA31_CHAT_TEMPLATE

# Llama-3.1's names for the 256 special tokens, IDs 128000.. in order. (llama_models' newer
# tokenizer.py renames 128005/128011 to <|step_id|>/<|image|> for Llama-3.2; the 3.1 checkpoint
# calls them reserved tokens, and the IDs of every token in use are the same.)
_NAMED_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
SPECIAL_TOKENS = _NAMED_SPECIALS + [
    f"<|reserved_special_token_{i}|>" for i in range(3, 256 - len(_NAMED_SPECIALS) + 3)
]
NUM_BASE_TOKENS = 128000
BOS_ID = 128000
EOS_IDS = [128001, 128008, 128009]
PAD_TOKEN = "<|finetune_right_pad_id|>"

# Llama-3.1-8B's config with the width scaled down (intermediate/hidden ratio kept at 3.5).
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 64,
    "intermediate_size": 224,
    "num_hidden_layers": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_IDS,
    "torch_dtype": "float32",
}

_MARKER = ".tiny-llama-complete"


def tokenizer_model_path() -> Path:
    """Meta's BPE ranks file (tiktoken format) shipped inside `llama_models`."""
    import llama_models

    return Path(llama_models.__file__).parent / "llama3" / "tokenizer.model"


def build_tokenizer(out_dir: Path) -> None:
    """Convert the tiktoken ranks to an HF fast tokenizer and save it with the chat template."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(
        vocab_file=str(tokenizer_model_path()), extra_special_tokens=SPECIAL_TOKENS
    )
    backend = converter.converted()
    # Like the real checkpoint: a plain encode prepends BOS; the chat template writes its own BOS
    # and apply_chat_template encodes without special tokens, so there is never a double BOS.
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", BOS_ID)],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token=PAD_TOKEN,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = LLAMA31_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    # transformers 5 writes the template to chat_template.jinja; older loaders read it from
    # tokenizer_config.json, where the real checkpoint keeps it.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = LLAMA31_CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def build_weights(out_dir: Path, seed: int) -> None:
    """Random float32 weights, scaled so that the residual stream, not the init noise floor,
    decides each next token: greedy output then varies from token to token and top-1 logits
    are well separated (HF and vLLM agree on greedy output despite float rounding)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**TINY_CONFIG)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    hidden = config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name == "model.embed_tokens.weight":
                param.normal_(0.0, 1.0, generator=generator)
            elif name == "lm_head.weight":
                # Unit-RMS final hidden state -> logits with std ~4.
                param.normal_(0.0, 4.0 / hidden**0.5, generator=generator)
            else:
                fan_in = param.shape[1]
                param.normal_(0.0, 1.0 / fan_in**0.5, generator=generator)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_IDS,
        do_sample=True,
        temperature=0.6,
        top_p=0.9,
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)


def is_complete(out_dir: Path) -> bool:
    return (Path(out_dir) / _MARKER).is_file()


def build_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny model folder at ``out_dir`` (idempotent: a complete build is reused).

    Built in a sibling temporary folder and renamed into place, so that a crash never leaves a
    half-written model that looks complete.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    with atomic_directory(out_dir) as staging:
        build_tokenizer(staging)
        build_weights(staging, seed)
        (staging / _MARKER).write_text(json.dumps({"seed": seed}))
    return out_dir

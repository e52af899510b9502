"""The tiny model's HF tokenizer must tokenize exactly like Meta's own Llama-3 tokenizer
(`llama_models`, tiktoken-based) and its chat-format encoder: the engine's prompt_token_ids and
the SAE service's positions depend on it."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from engine.tiny.build import BOS_ID, EOS_IDS, SPECIAL_TOKENS, build_tiny_model

TEXTS = [
    "Hello world",
    "",
    " ",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\nand\n\n\nblank lines",
    "whitespace runs:          end",
    "numbers 1234567890 3.14159 -42 1e-10 0x1F 1,000,000",
    "def f(x):\n    return {'a': [x**2 for x in range(10)]}  # comment\n",
    'fn main() { println!("{}", 1 + 2); }',
    "unicode: café, naïve, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어, العربية, हिन्दी",
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    "contractions: I'm, you're, it's, we'll, they'd, I've, DON'T",
    "mixed CASE and CamelCaseIdentifiers and snake_case_names",
    "punctuation!!! ??? ... --- *** ~~~ ```code``` <html><body></body></html>",
    "a" * 300,
    "special-looking text <|eot_id|> in a prompt",
]

DIALOG = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Japan? Answer in 日本語 😀."},
]

# The Llama-3.1 Instruct template always opens with this system preamble.
DATE_PREAMBLE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


@pytest.fixture(scope="module")
def meta_tokenizer():
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance()


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("text", TEXTS)
def test_plain_text_ids_match_meta_tokenizer(hf_tokenizer, meta_tokenizer, text):
    # HF tokenizers (the real checkpoint's too) read special-token text as the special token
    # (the engine never lets them: tests/engine/generation/test_prompts.py);
    # tiktoken does so only when asked.
    expected = meta_tokenizer.encode(text, bos=False, eos=False, allowed_special="all")
    assert hf_tokenizer.encode(text, add_special_tokens=False) == expected
    # A plain encode adds exactly one BOS, like the real checkpoint.
    assert hf_tokenizer.encode(text) == [BOS_ID, *expected]
    assert hf_tokenizer.decode(expected) == meta_tokenizer.decode(expected)


def test_special_tokens_match_meta_ids(hf_tokenizer, meta_tokenizer):
    vocab = hf_tokenizer.get_vocab()
    assert len(vocab) == 128256
    assert [vocab[token] for token in SPECIAL_TOKENS] == list(range(128000, 128256))
    # llama_models' tokenizer.py renames two reserved slots for Llama-3.2 (<|step_id|>,
    # <|image|>); every other special token has the same name and ID.
    renamed = {"<|step_id|>", "<|image|>"}
    for name, token_id in meta_tokenizer.special_tokens.items():
        if name not in renamed and not name.startswith("<|reserved_special_token_"):
            assert vocab[name] == token_id, name
    assert hf_tokenizer.bos_token_id == BOS_ID
    assert set(EOS_IDS) == set(meta_tokenizer.stop_tokens)


def _meta_dialog_ids(meta_tokenizer, dialog):
    from llama_models.datatypes import RawMessage, StopReason
    from llama_models.llama3.chat_format import ChatFormat

    messages = []
    system = ""
    if dialog and dialog[0]["role"] == "system":
        system, dialog = dialog[0]["content"], dialog[1:]
    messages.append(RawMessage(role="system", content=DATE_PREAMBLE + system))
    for turn in dialog:
        messages.append(
            RawMessage(
                role=turn["role"], content=turn["content"], stop_reason=StopReason.end_of_turn
            )
        )
    return ChatFormat(meta_tokenizer).encode_dialog_prompt(messages).tokens


@pytest.mark.parametrize(
    "dialog",
    [DIALOG, DIALOG[1:], [{"role": "user", "content": "def f(x):\n    return x  # 😀"}]],
    ids=["with-system", "no-system", "single-user-turn"],
)
def test_chat_template_matches_meta_chat_format(hf_tokenizer, meta_tokenizer, dialog):
    ids = hf_tokenizer.apply_chat_template(
        dialog, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert ids == _meta_dialog_ids(meta_tokenizer, dialog)
    assert ids[0] == BOS_ID and ids[1] != BOS_ID  # exactly one BOS


def test_build_is_idempotent_and_complete(tiny_model_dir):
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 32
    assert config["head_dim"] == 32
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == EOS_IDS


def test_greedy_continuation_varies(tiny_model_dir, hf_tokenizer):
    """Random weights must not collapse to one repeated token, or greedy-equality tests
    between engines would prove little."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me a story."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    continuation = out[0, ids["input_ids"].shape[1] :].tolist()
    assert len(set(continuation)) >= 8, continuation

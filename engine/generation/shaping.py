"""What the generation service asks vLLM (sampling parameters, the model's stop IDs) and the
shape of its answer (ids, timings): the parts of serving.py that need no running engine."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from engine.generation.protocol import GenerateRequest, GenerateResponse, Timings, Usage
from engine.generation.settings import EngineSettings

logger = logging.getLogger("engine.generation.serving")  # the service's log, as before


def eos_ids(settings: EngineSettings, tokenizer: Any) -> list[int]:
    """The model's EOS IDs from its generation config (Llama-3.1: 128001, 128008, 128009),
    plus the tokenizer's own EOS."""
    from transformers import GenerationConfig

    ids: set[int] = set()
    try:
        config = GenerationConfig.from_pretrained(
            settings.model, cache_dir=str(settings.hf_cache_dir or "") or None
        )
        eos = config.eos_token_id
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    except (OSError, ValueError, json.JSONDecodeError):
        logger.warning(
            "no generation config for %s; stopping on the tokenizer's EOS", settings.model
        )
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def sampling_params(request: GenerateRequest, eos_ids: list[int]):
    from vllm import SamplingParams

    return SamplingParams(
        n=1,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        seed=request.seed,
        stop_token_ids=eos_ids,
        skip_special_tokens=True,
    )


def answer(
    model_id: str,
    request_id: str,
    prompt_ids: list[int],
    text: str,
    output_ids: list[int],
    finish_reason: str | None,
    clock: tuple[float, float | None, float],
) -> GenerateResponse:
    received, first_token_at, done = clock
    first_token_at = first_token_at or done
    return GenerateResponse(
        request_id=request_id,
        model_id=model_id,
        output_text=text,
        output_token_ids=output_ids,
        prompt_token_ids=prompt_ids,
        finish_reason=finish_reason or "abort",
        usage=Usage(prompt_tokens=len(prompt_ids), output_tokens=len(output_ids)),
        timings_ms=Timings(
            queue=round((first_token_at - received) * 1000, 3),
            generate=round((done - first_token_at) * 1000, 3),
            total=round((done - received) * 1000, 3),
        ),
    )


def request_ids(request: GenerateRequest) -> tuple[str, str]:
    request_id = request.request_id or uuid.uuid4().hex
    # The client's request_id need not be unique; the engine's must be.
    return request_id, f"{request_id}-{uuid.uuid4().hex[:8]}"

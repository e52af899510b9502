"""Run by test_steering_layer.py in its own process: one real vLLM engine on the tiny model
(engine core and CPU worker in this process, steering plugin installed), the prompt log-probs
of one prompt plain and steered at each of LAYERS. Prints one JSON line.

    python -m tests.engine.generation.steering_engine_run MODEL_DIR
"""

from __future__ import annotations

import base64
import json
import os
import sys

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

import numpy as np

from engine.generation.protocol import SteerVector
from engine.generation.runtime import engine_kwargs
from engine.generation.settings import EngineSettings
from engine.generation.steering import SteeringSupport, steer_spec
from engine.generation.steering_patch import STATUS_METHOD

PROMPT = [128000] + [1000 + 37 * j for j in range(15)]
LAYERS = (3, 16)
SCALE = 2.5
TOP = 8  # log-probs returned per position (plus the prompt's own token)


def vector(d_model: int) -> np.ndarray:
    return (np.random.default_rng(21).standard_normal(d_model) * 4.0).astype("<f4")


def main(model: str) -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    settings = EngineSettings(model=model, max_model_len=256)
    llm = LLM(**engine_kwargs(settings))
    status = llm.collective_rpc(STATUS_METHOD)[0]
    support = SteeringSupport(True, None, status["d_model"], status["num_layers"])
    v = vector(support.d_model)

    def run(layer: int | None) -> list[dict[str, float]]:
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=TOP)
        prompt = TokensPrompt(prompt_token_ids=PROMPT)
        if layer is not None:
            wire = SteerVector(
                layer=layer, vector_b64=base64.b64encode(v.tobytes()).decode(), scale=SCALE
            )
            spec = steer_spec([wire], support, settings)
            params.extra_args = spec.extra_args
            prompt["cache_salt"] = spec.cache_salt
        out = llm.generate([prompt], params, use_tqdm=False)[0]
        return [
            {str(token): float(lp.logprob) for token, lp in (position or {}).items()}
            for position in out.prompt_logprobs
        ]

    result = {"status": status, "plain": run(None)}
    result["steered"] = {str(layer): run(layer) for layer in LAYERS}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

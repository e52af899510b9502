"""Run by test_seeded_sampling.py in its own process: one real vLLM engine (engine core and CPU
worker in this process), one mixed batch of seeded requests generated with the sort-free
top-k/top-p plugin installed and again without it. Prints one JSON line.

    python -m tests.engine.generation.seeded_engine_run MODEL_DIR
"""

from __future__ import annotations

import json
import os
import sys

# The engine core in this process, so that installing and removing the patch here reaches the
# sampler (vLLM would otherwise run it in a child process).
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

from engine.generation import sampling_patch
from engine.generation.runtime import engine_kwargs
from engine.generation.settings import EngineSettings

# (temperature, top_p, top_k) per request: the page's defaults, greedy, top-k with top-p,
# temperature alone with p = 1, top-k alone; all in one batch.
MIX = (
    [(0.7, 0.95, 0)] * 6
    + [(0.0, 1.0, 0)] * 2
    + [(1.0, 0.9, 20)] * 2
    + [(0.9, 1.0, 0), (0.7, 1.0, 50)]
)


def main(model: str) -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(**engine_kwargs(EngineSettings(model=model, max_model_len=256)))
    prompts = [
        TokensPrompt(prompt_token_ids=[128000] + [1000 + 97 * i + j for j in range(6)])
        for i in range(len(MIX))
    ]
    params = [
        SamplingParams(
            max_tokens=12,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=1000 + i,
            ignore_eos=True,
        )
        for i, (temperature, top_p, top_k) in enumerate(MIX)
    ]

    def generate() -> list[list[int]]:
        outputs = llm.generate(prompts, params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outputs]

    sampling_patch.register()  # what vLLM does through the entry point
    installed = sampling_patch.is_installed()
    patched = generate()
    rows = dict(sampling_patch.stats().rows) if installed else {}
    sampling_patch.uninstall()
    unpatched = generate()
    print(
        "RESULT "
        + json.dumps(
            {
                "installed": installed,
                "rows": rows,
                "patched": patched,
                "unpatched": unpatched,
                "still_installed": sampling_patch.is_installed(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1])

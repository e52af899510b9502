"""The steering vector reaches the right layer: vLLM's prompt log-probs of a prompt steered at
layer L equal a transformers forward of the same tiny model with the same ``scale x vector``
added by a hook to block L's output (HF's ``hidden_states[L + 1]``), within float32 tolerance,
and differ from the same hook one block later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.generation.steering_engine_run import LAYERS, PROMPT, SCALE, vector

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[3]
TOLERANCE = 1e-4  # log-prob, float32 (seen: 1e-5)


@pytest.fixture(scope="module")
def run(tiny_model_dir):
    # Its own process: an in-process engine retunes torch threads and CPU affinity.
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.generation.steering_engine_run", str(tiny_model_dir)],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    added = torch.from_numpy(vector(model.config.hidden_size).copy()) * SCALE

    def log_probs(layer: int | None):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                return (output[0] + added, *output[1:])
            return output + added

        handle = None if layer is None else model.model.layers[layer].register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = model(torch.tensor([PROMPT])).logits[0]
        finally:
            if handle is not None:
                handle.remove()
        return torch.log_softmax(logits, dim=-1)

    return log_probs


def worst_difference(reference, got: list[dict[str, float]]) -> float:
    """Largest |difference| over every log-prob vLLM returned (position 0 has none)."""
    worst = 0.0
    for position, values in enumerate(got[1:], start=1):
        for token, value in values.items():
            worst = max(worst, abs(float(reference[position - 1, int(token)]) - value))
    return worst


def test_the_worker_attached_steering(run):
    assert run["status"]["available"], run["status"]
    assert run["status"]["model_class"] == "LlamaForCausalLM"


def test_plain_prompt_matches_transformers(run, hf):
    assert worst_difference(hf(None), run["plain"]) < TOLERANCE


@pytest.mark.parametrize("layer", LAYERS)
def test_steered_prompt_matches_the_hook_at_its_layer_only(run, hf, layer):
    steered = run["steered"][str(layer)]
    assert worst_difference(hf(layer), steered) < TOLERANCE
    # The vector changed the answer, and one block later is a different answer.
    assert worst_difference(hf(None), steered) > 0.1
    assert worst_difference(hf(layer + 1), steered) > 0.1

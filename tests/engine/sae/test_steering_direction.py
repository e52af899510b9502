"""Direction: adding feature f's decoder row (from the SAE service's /steering_vectors) after
block L, where the SAE reads, raises f's activation at the steered positions, more with a larger
strength, and f's more than any other feature's (the demo SAE on the tiny model, layer 16).

The steered residual comes from a transformers forward with the row added by a hook at block L's
output: test_steering_layer.py shows vLLM's steered forward equals that hook. The features come
from the service's own encoder (engine.sae.encoder), whose unsteered answer is checked here
against the service's /analyze_features read-back of the same tokens.

On the random-weight tiny model, reading back the *steered text* through an unsteered forward
(what the backend stores) shows nothing of f: its untied, random output head has no reason to
pick tokens that carry f. That read-back is meaningful on a trained model (docs/steering.md).
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
import torch

from engine.sae.encoder import SaeEncoder
from engine.sae.layouts import load_weights, read_meta
from tests.support.servers import SERVICE_AUTH

PROMPT = [128000, 9906, 1917, 11, 1268, 527, 499, 3432, 30, 578, 4062, 374, 6437]
FEATURES = [5, 11, 300]
STRENGTHS = [0.0, 2.0, 8.0, 32.0]


@pytest.fixture(scope="module")
def rows(sae_url) -> dict:
    response = httpx.post(
        sae_url + "/steering_vectors", json={"feature_ids": FEATURES}, headers=SERVICE_AUTH
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def activations(tiny_model_dir, demo_sae_dir, rows):
    """strength -> feature -> activations [positions, d_sae] of the steered residual."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    meta = read_meta(demo_sae_dir)
    encoder = SaeEncoder(meta, load_weights(meta), device=torch.device("cpu"), dtype=torch.float32)
    layer = rows["layer"]
    out: dict[float, dict[int, torch.Tensor]] = {}
    for strength in STRENGTHS:
        out[strength] = {}
        for v in rows["vectors"]:
            row = torch.from_numpy(np.frombuffer(base64.b64decode(v["vector_b64"]), "<f4").copy())

            seen: list[torch.Tensor] = []

            def hook(_module, _inputs, output, added=strength * row, seen=seen):
                # Block L's output plus the row: HF's hidden_states[L + 1], steered (kept here,
                # since transformers may record hidden_states before this hook runs).
                steered = (output[0] if isinstance(output, tuple) else output) + added
                seen.append(steered[0])
                return (steered, *output[1:]) if isinstance(output, tuple) else steered

            handle = model.model.layers[layer].register_forward_hook(hook)
            try:
                with torch.no_grad():
                    model(torch.tensor([PROMPT]))
            finally:
                handle.remove()
            out[strength][v["feature_id"]] = encoder.encode(seen[0])
    return out


def test_unsteered_encoding_is_the_services_read_back(sae_url, activations):
    response = httpx.post(
        sae_url + "/analyze_features",
        json={"token_ids": PROMPT, "feature_ids": FEATURES},
        headers=SERVICE_AUTH,
    )
    assert response.status_code == 200, response.text
    for trace in response.json()["features"]:
        f = trace["feature_id"]
        local = activations[0.0][f][:, f].tolist()
        assert trace["activations"] == pytest.approx(local, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("feature", FEATURES)
def test_steering_a_feature_raises_it_more_with_strength(activations, feature):
    means = [float(activations[s][feature][:, feature].mean()) for s in STRENGTHS]
    maxes = [float(activations[s][feature][:, feature].max()) for s in STRENGTHS]
    # JumpReLU: below its threshold a feature reads 0, so weak steering may leave it at 0.
    assert means == sorted(means) and means[-1] > means[-2] > means[0], means
    assert maxes[-1] > maxes[0], maxes
    # f rises by more than any other feature at the strongest steering, at every position.
    rise = activations[STRENGTHS[-1]][feature] - activations[0.0][feature]
    assert (rise.argmax(dim=-1) == feature).all()

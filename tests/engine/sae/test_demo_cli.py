"""`playground sae --model DIR --sae-dir DIR` (a real process) with the demo SAE."""

from __future__ import annotations

import json

import httpx

from engine.sae.demo import DEMO_SAE_ID, build_demo_sae
from tests.support.servers import SERVICE_AUTH


def test_demo_sae_is_saelens_layout_and_marked_demo(demo_sae_dir):
    cfg = json.loads((demo_sae_dir / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["d_sae"] == 512
    assert cfg["metadata"]["hook_name"] == "blocks.16.hook_resid_post"
    assert cfg["sae_id"] == DEMO_SAE_ID and cfg["demo"] is True
    assert (demo_sae_dir / "sae_weights.safetensors").is_file()


def test_demo_sae_build_is_idempotent(tiny_model_dir, demo_sae_dir):
    before = (demo_sae_dir / "sae_weights.safetensors").stat().st_mtime_ns
    assert build_demo_sae(tiny_model_dir, demo_sae_dir) == demo_sae_dir
    assert (demo_sae_dir / "sae_weights.safetensors").stat().st_mtime_ns == before


def test_cli_service_serves_the_demo_sae(sae_url, sequences):
    health = httpx.get(sae_url + "/health", headers=SERVICE_AUTH).json()
    assert health["status"] == "ok"
    assert health["torch_threads"] == 1  # SAE_SERVICE_TORCH_THREADS, set by the fixture
    saes = httpx.get(sae_url + "/saes", headers=SERVICE_AUTH).json()
    assert saes["default"] == {"sae_id": DEMO_SAE_ID, "layer": 16}
    (info,) = saes["saes"]
    assert info["demo"] is True and info["d_in"] == 64 and info["d_sae"] == 512
    assert "DEMO" in info["description"]
    ids = sequences[1]
    response = httpx.post(
        sae_url + "/extract_features",
        json={"token_ids": ids, "top_k": 64},
        headers=SERVICE_AUTH,
    )
    assert response.status_code == 200, response.text
    counts = [len(e["features"]) for e in response.json()["feature_timeline"]]
    # Thresholds sit near the 97th percentile: a handful of the 512 features fire per token.
    assert 2 <= sum(counts) / len(counts) <= 64

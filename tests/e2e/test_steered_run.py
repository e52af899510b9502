"""A steered pair through the whole stack, real parts only: backend -> SAE service's decoder
rows (demo SAE) -> vLLM engine steering inside its batch (tiny model) -> SAE service -> Postgres.
Direction: steering feature f raises f's activation over the output, more with a larger
strength; strength 0 gives exactly the default answer (same seed)."""

from __future__ import annotations

import httpx
import pytest

from backend.app import create_app
from backend.settings import Settings
from common import sse
from tests.support.databases import create_database
from tests.support.servers import SERVICE_TOKEN, serve_app

pytestmark = pytest.mark.vllm

RUN = "/playground/activations/run"
BODY = {"prompt": "Name three colours.", "max_tokens": 16, "temperature": 0.8, "seed": 3}


@pytest.fixture(scope="module")
def backend_url(pg_uri, engine_url, sae_url, tiny_model_dir):
    settings = Settings(
        database_url=create_database(pg_uri, prefix="e2e_steer", migrate=True),
        playground_activations_hf_url=engine_url,
        playground_sae_url=sae_url,
        playground_default_model_id=str(tiny_model_dir),
        playground_default_sae_id="demo_random",
        playground_default_sae_layer=16,
        playground_service_token=SERVICE_TOKEN,
    )
    with serve_app(create_app(settings)) as url:
        yield url


def steered(backend_url: str, feature: int, strength: float, **extra) -> dict:
    body = {**BODY, "steer": [{"feature_id": feature, "strength": strength}], "compare": True}
    response = httpx.post(backend_url + RUN, json={**body, **extra}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_steering_raises_the_feature_and_strength_zero_changes_nothing(backend_url):
    plain = httpx.post(backend_url + RUN, json=BODY, timeout=300).json()
    # A feature that is weak or silent in the plain answer's output.
    top = {f["feature_id"] for f in plain["preview"]["top_features"]}
    feature = next(f for f in range(1, 1000) if f not in top)

    zero = steered(backend_url, feature, 0.0)
    default = httpx.get(f"{backend_url}/playground/activations/{zero['pair']['request_id']}")
    assert zero["output"]["token_ids"] == default.json()["output"]["token_ids"]
    assert zero["output"]["token_ids"] == plain["output"]["token_ids"]  # same seed, same answer

    figures = []
    for strength in (8.0, 64.0, 300.0):
        answer = steered(backend_url, feature, strength)
        figure = answer["steering"]["features"][0]
        assert figure["norm"] > 0
        figures.append(figure)
    print("read-back by strength:", [(f["strength"], f["steered"], f["default"]) for f in figures])
    mid, high = figures[-2:]
    # Raised against the default, and more with the larger strength.
    assert high["steered"]["mean"] > high["default"]["mean"], high
    assert high["steered"]["mean"] > mid["steered"]["mean"] >= figures[0]["steered"]["mean"]
    assert high["steered"]["hits"] > high["default"]["hits"]


def test_a_streamed_pair_matches_its_blocking_twin(backend_url):
    body = {**BODY, "steer": [{"feature_id": 5, "strength": 8.0}], "compare": True}
    with httpx.stream(
        "POST", backend_url + RUN, json=body, headers={"accept": sse.MEDIA_TYPE}, timeout=300
    ) as r:
        assert r.status_code == 200, r.read()
        events = list(sse.parse(r.iter_lines()))
    dones = {d["role"]: d for name, d in events if name == "done"}
    assert set(dones) == {"steered", "default"} and events[-1][1]["role"] == "steered"
    blocking = httpx.post(backend_url + RUN, json=body, timeout=300).json()
    assert dones["steered"]["output"]["token_ids"] == blocking["output"]["token_ids"]
    default = httpx.get(
        f"{backend_url}/playground/activations/{blocking['pair']['request_id']}"
    ).json()
    assert dones["default"]["output"]["token_ids"] == default["output"]["token_ids"]

"""A steered pair through the whole stack, real parts only: backend -> SAE service's decoder
rows (demo SAE) -> vLLM engine steering inside its batch (tiny model) -> SAE service -> Postgres.
Strength 0 gives exactly the default answer (same seed); a strong steer changes the answer;
the read-back figures are those of the stored timelines; a streamed pair equals its blocking
twin.

Direction (steering f raises f) is not asserted on the stored read-back here: the SAE service
reads the steered *text* back through an unsteered forward, and on the random-weight tiny model
nothing makes that text carry f (tests/engine/sae/test_steering_direction.py checks direction
on the steered residual itself; docs/steering.md).
"""

from __future__ import annotations

import httpx
import pytest

from common import sse
from tests.support.metrics import sample, scrape
from tests.support.servers import SERVICE_AUTH

pytestmark = pytest.mark.vllm

RUN = "/playground/activations/run"
BODY = {"prompt": "Name three colours.", "max_tokens": 16, "temperature": 0.8, "seed": 3}


def steered(backend_url: str, feature: int, strength: float, **extra) -> dict:
    body = {**BODY, "steer": [{"feature_id": feature, "strength": strength}], "compare": True}
    response = httpx.post(backend_url + RUN, json={**body, **extra}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def read_back(run: dict, feature: int) -> dict:
    outputs = [e for e in run["preview"]["feature_timeline"] if e["segment"] == "output"]
    acts = [f["activation"] for e in outputs for f in e["features"] if f["feature_id"] == feature]
    mean = sum(acts) / len(outputs) if outputs and acts else 0.0
    return {"max": max(acts, default=0.0), "mean": mean, "hits": len(acts)}


def steered_requests(engine_url: str) -> float:
    """The engine's count of requests that ran with a steering vector (its /metrics)."""
    answer = httpx.get(engine_url + "/metrics", headers=SERVICE_AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return sample(scrape(answer.text), "playground_engine_steered_requests_total")


def test_strength_zero_changes_nothing_and_a_strong_steer_changes_the_answer(
    backend_url, engine_url
):
    plain = httpx.post(backend_url + RUN, json=BODY, timeout=300).json()
    feature = plain["preview"]["top_features"][0]["feature_id"]

    zero = steered(backend_url, feature, 0.0)
    default = httpx.get(f"{backend_url}/playground/activations/{zero['pair']['request_id']}")
    assert zero["output"]["token_ids"] == default.json()["output"]["token_ids"]
    assert zero["output"]["token_ids"] == plain["output"]["token_ids"]  # same seed, same answer

    before = steered_requests(engine_url)
    strong = steered(backend_url, feature, 300.0)
    # The pair's steered run carried the vector; its default did not.
    assert steered_requests(engine_url) - before == 1
    default = httpx.get(
        f"{backend_url}/playground/activations/{strong['pair']['request_id']}"
    ).json()
    assert default["output"]["token_ids"] == plain["output"]["token_ids"]
    assert strong["output"]["token_ids"] != plain["output"]["token_ids"]
    figure = strong["steering"]["features"][0]
    assert figure["norm"] > 0 and figure["strength"] == 300.0
    for side, run in (("steered", strong), ("default", default)):
        want = read_back(run, feature)
        assert figure[side]["hits"] == want["hits"]
        assert figure[side]["max"] == pytest.approx(want["max"])
        assert figure[side]["mean"] == pytest.approx(want["mean"])
    assert figure["default"]["hits"] > 0  # the plain answer's top feature: not vacuous


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

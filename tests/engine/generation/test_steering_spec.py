"""The API side of steering without an engine: vectors summed per layer in float32 with their
scales, a cache salt per distinct steering, and steering_unavailable where the workers did not
attach it or the operator turned it off."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from common.errors import InvalidRequest
from engine.generation.protocol import SteerVector
from engine.generation.settings import EngineSettings
from engine.generation.steering import SteeringSupport, steer_spec
from engine.generation.steering_buffers import EXTRA_ARGS_KEY, vectors_of

SUPPORT = SteeringSupport(True, None, d_model=4, num_layers=6)
SETTINGS = EngineSettings(model="/models/x")


def wire(layer: int, values, scale: float = 1.0) -> SteerVector:
    raw = np.asarray(values, dtype="<f4").tobytes()
    return SteerVector(layer=layer, vector_b64=base64.b64encode(raw).decode(), scale=scale)


def test_vectors_are_summed_per_layer_with_their_scales():
    spec = steer_spec(
        [wire(2, [1, 2, 3, 4], 2.0), wire(5, [1, 0, 0, 0]), wire(2, [1, 1, 1, 1], -1.0)],
        SUPPORT,
        SETTINGS,
    )
    assert [layer for layer, _ in spec.extra_args[EXTRA_ARGS_KEY]] == [2, 5]
    params = type("P", (), {"extra_args": spec.extra_args})()
    got = vectors_of(params, 4)
    assert got is not None
    assert got[2].tolist() == [1, 3, 5, 7] and got[5].tolist() == [1, 0, 0, 0]


def test_each_steering_has_its_own_cache_salt():
    a = steer_spec([wire(2, [1, 2, 3, 4])], SUPPORT, SETTINGS).cache_salt
    assert a == steer_spec([wire(2, [1, 2, 3, 4])], SUPPORT, SETTINGS).cache_salt
    assert a != steer_spec([wire(3, [1, 2, 3, 4])], SUPPORT, SETTINGS).cache_salt
    assert a != steer_spec([wire(2, [1, 2, 3, 4], 0.5)], SUPPORT, SETTINGS).cache_salt


@pytest.mark.parametrize(
    "support, settings",
    [
        (SteeringSupport(False, "model class X is not supported"), SETTINGS),
        (SUPPORT, EngineSettings(model="/models/x", max_steer_vectors=0)),
    ],
)
def test_refused_where_it_cannot_steer(support, settings):
    with pytest.raises(InvalidRequest) as caught:
        steer_spec([wire(2, [1, 2, 3, 4])], support, settings, where="requests[3]: ")
    assert caught.value.code == "steering_unavailable"
    assert caught.value.message.startswith("requests[3]: ")

"""A request's ``steer`` checked and turned into what the vLLM worker reads (docs/engine.md,
"Steering"): the engine's answer to whether it can steer, the bounds, and the payload.

The worker (engine.generation.steering_patch) is asked once at start-up whether it attached
steering to the loaded model; if not, every steered request is refused with 422
``steering_unavailable``, never answered unsteered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import InvalidRequest
from engine.generation.protocol import SteerVector
from engine.generation.settings import EngineSettings
from engine.generation.steering_buffers import EXTRA_ARGS_KEY
from engine.generation.steering_patch import STATUS_METHOD

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteeringSupport:
    available: bool
    reason: str | None = None
    d_model: int = 0
    num_layers: int = 0


@dataclass(frozen=True)
class SteerSpec:
    """What goes to vLLM with a steered request."""

    extra_args: dict[str, Any]
    cache_salt: str  # steered KV blocks are never shared with plain (or differently steered) ones


async def probe(engine: Any) -> SteeringSupport:
    """Ask every worker; steering is available only where all of them attached it."""
    try:
        answers = await engine.collective_rpc(STATUS_METHOD)
    except Exception as exc:  # the plugin is not loaded in the worker (VLLM_PLUGINS), or older
        reason = f"the vLLM workers cannot report steering ({type(exc).__name__}: {exc})"
        logger.warning("steering unavailable: %s", reason)
        return SteeringSupport(False, reason)
    missing = next((a for a in answers if not a.get("available")), None)
    if missing is not None or not answers:
        reason = (missing or {}).get("reason") or "no vLLM worker answered"
        logger.warning("steering unavailable: %s", reason)
        return SteeringSupport(False, reason)
    first = answers[0]
    return SteeringSupport(True, None, int(first["d_model"]), int(first["num_layers"]))


def _decode(vector: SteerVector, d_model: int, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(vector.vector_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"{where}vector_b64 is not valid base64", code="steer_vector_invalid"
        ) from exc
    if len(raw) != 4 * d_model:
        raise InvalidRequest(
            f"{where}vector_b64 holds {len(raw)} bytes; this model's residual stream takes "
            f"{d_model} float32 values ({4 * d_model} bytes)",
            code="steer_vector_wrong_length",
        )
    values = np.frombuffer(raw, dtype="<f4")
    if not np.isfinite(values).all():
        raise InvalidRequest(f"{where}vector has NaN or inf values", code="steer_vector_not_finite")
    return values


def steer_spec(
    steer: list[SteerVector], support: SteeringSupport, settings: EngineSettings, where: str = ""
) -> SteerSpec:
    """Check a request's steer (422 on any bound) and sum its ``scale x vector`` per layer."""
    if settings.max_steer_vectors == 0:
        raise InvalidRequest(
            f"{where}steering is off on this engine (ENGINE_MAX_STEER_VECTORS=0)",
            code="steering_unavailable",
        )
    if len(steer) > settings.max_steer_vectors:
        raise InvalidRequest(
            f"{where}{len(steer)} steering vectors exceed this engine's bound of "
            f"{settings.max_steer_vectors}",
            code="too_many_steer_vectors",
        )
    if not support.available:
        raise InvalidRequest(
            f"{where}this engine cannot steer: {support.reason}", code="steering_unavailable"
        )
    by_layer: dict[int, np.ndarray] = {}
    for i, vector in enumerate(steer):
        at = f"{where}steer[{i}]: "
        if vector.layer >= support.num_layers:
            raise InvalidRequest(
                f"{at}layer {vector.layer} is past the model's last block "
                f"({support.num_layers - 1})",
                code="steer_layer_out_of_range",
            )
        if abs(vector.scale) > settings.max_steer_scale:
            raise InvalidRequest(
                f"{at}|scale| {abs(vector.scale)} exceeds the bound of {settings.max_steer_scale}",
                code="steer_scale_too_large",
            )
        values = _decode(vector, support.d_model, at)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.float32(vector.scale) * values
            total = by_layer[vector.layer] + scaled if vector.layer in by_layer else scaled
        if not np.isfinite(total).all():
            raise InvalidRequest(
                f"{at}scale x vector overflows float32", code="steer_vector_not_finite"
            )
        by_layer[vector.layer] = total.astype("<f4")
    digest = hashlib.sha256()
    payload: list[list[Any]] = []
    for layer in sorted(by_layer):
        raw = by_layer[layer].tobytes()
        digest.update(f"{layer}:".encode())
        digest.update(raw)
        payload.append([layer, raw])
    return SteerSpec({EXTRA_ARGS_KEY: payload}, f"steer-{digest.hexdigest()}")

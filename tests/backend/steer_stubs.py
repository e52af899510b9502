"""Steering and streaming for the stub engine and SAE service (tests/backend/stubs.py).

- Engine: ``steer`` is held to the real request model (engine/generation/protocol.py
  ``SteerVector``) and to the stub's ``d_model``; a steered answer differs from the plain one
  (its tokens are drawn with the steer's scales in the seed), and mode ``no_steer`` answers
  422 ``steering_unavailable`` as an engine that cannot steer does. ``stream: true`` answers
  the real engine's events (``prompt``, ``token`` ..., ``done``), each held to its model.
- SAE service: ``POST /steering_vectors`` answers deterministic rows of ``D_IN`` floats (422
  ``feature_id_out_of_range`` past ``d_sae``, 404 for an unknown SAE or layer), checked
  against the real ``SteeringVectorsResponse``.
"""

from __future__ import annotations

import base64
import math
import random
import struct
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from engine.generation import protocol as engine_protocol
from engine.sae import protocol as sae_protocol

if TYPE_CHECKING:
    from tests.backend.stubs import StubState

D_IN = 4096


def steer_salt(state: StubState, body: dict[str, Any]) -> tuple[str, Response | None]:
    """('' or a salt for the steered tokens, or a refusal to answer instead)."""
    from tests.backend.stubs import error

    steer = body.get("steer")
    if steer is None:
        return "", None
    if state.mode == "no_steer":
        return "", error(state, 422, "steering_unavailable", "this engine cannot steer")
    try:
        vectors = [engine_protocol.SteerVector.model_validate(item) for item in steer]
    except ValidationError as exc:
        state.drifts.append(f"engine: steer off the real model: {exc}")
        return "", error(state, 422, "invalid_request", "bad steer")
    for vector in vectors:
        if len(base64.b64decode(vector.vector_b64)) != 4 * D_IN:
            state.drifts.append("engine: a steering vector of the wrong length")
            return "", error(state, 422, "invalid_request", "wrong vector length")
    return ":".join(f"{v.layer}/{v.scale:g}" for v in vectors), None


def decoder_row(feature_id: int) -> list[float]:
    rng = random.Random(feature_id)
    return [rng.uniform(-1.0, 1.0) for _ in range(D_IN)]


def add_steering_vectors(app: FastAPI, state: StubState) -> None:
    from tests.backend.stubs import D_SAE, SAE_ID, SAE_LAYER, answer, error

    @app.post("/steering_vectors")
    async def steering_vectors(request: Request):
        body = await request.json()
        state.calls.append({"steering_vectors": body})
        try:
            req = sae_protocol.SteeringVectorsRequest.model_validate(body)
        except ValidationError as exc:
            state.drifts.append(f"sae: /steering_vectors request off the real model: {exc}")
            return error(state, 422, "invalid_request", "bad request")
        if req.sae_id != SAE_ID:
            return error(state, 404, "sae_not_found", f"no SAE {req.sae_id!r}")
        if req.layer != SAE_LAYER:
            return error(state, 404, "sae_layer_not_found", f"no layer {req.layer}")
        for fid in req.feature_ids:
            if fid >= D_SAE:
                return error(
                    state, 422, "feature_id_out_of_range", f"feature_id {fid} >= d_sae {D_SAE}"
                )
        vectors = []
        for fid in req.feature_ids:
            row = decoder_row(fid)
            vectors.append({
                "feature_id": fid,
                "vector_b64": base64.b64encode(struct.pack(f"<{D_IN}f", *row)).decode(),
                "norm": math.sqrt(sum(x * x for x in row)),
            })  # fmt: skip
        return answer(state, sae_protocol.SteeringVectorsResponse, {
            "sae_id": SAE_ID, "layer": SAE_LAYER, "d_in": D_IN, "vectors": vectors,
        })  # fmt: skip

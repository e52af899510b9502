"""Steering vectors: an SAE's decoder rows in the model's residual units (docs/sae.md).

SAELens' ``expected_average_only_in`` normalisation feeds the encoder ``x * s`` (Llama Scope's
``norm_scaling_factor``, a sidecar's for SAELens folders) and divides what the decoder writes
by ``s``: a row in the residual stream's units is ``W_dec[f] / s``, and ``strength x row`` added
after block ``layer`` means what it means in SAELens and Neuronpedia. ``constant_norm_rescale``
scales per token (no single factor): its rows are returned as stored. Part of the compute path:
plain exceptions, mapped to the wire's errors by the service.
"""

from __future__ import annotations

import base64

import torch

from engine.sae.encoder import SaeMeta
from engine.sae.layouts import decoder_rows
from engine.sae.protocol import SteeringVector, SteeringVectorsResponse


def residual_scale(meta: SaeMeta) -> float:
    """What divides a stored decoder row to give it the residual stream's units."""
    if meta.normalize_activations == "expected_average_only_in" and meta.norm_scaling_factor:
        return float(meta.norm_scaling_factor)
    return 1.0


def steering_vectors(meta: SaeMeta, feature_ids: list[int]) -> SteeringVectorsResponse:
    rows = decoder_rows(meta, feature_ids).to(torch.float64) / residual_scale(meta)
    vectors = []
    for feature_id, row in zip(feature_ids, rows.to(torch.float32), strict=True):
        raw = row.numpy().astype("<f4").tobytes()
        vectors.append(
            SteeringVector(
                feature_id=feature_id,
                vector_b64=base64.b64encode(raw).decode("ascii"),
                norm=float(row.double().norm()),
            )
        )
    return SteeringVectorsResponse(
        sae_id=meta.sae_id, layer=meta.layer, d_in=meta.d_in, vectors=vectors
    )

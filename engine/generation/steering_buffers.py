"""Per-request steering inside a vLLM worker: persistent buffers, filled before each forward.

One ``SteeringBuffers`` per model runner (engine.generation.steering_patch attaches it at model
load, before any compilation or CUDA-graph capture):

- ``rows`` [max_rows, d_model]: row 0 is all zeros; rows 1.. hold this step's vectors, one per
  (steered request, layer), each the sum of that request's ``scale x vector`` at that layer.
- ``index`` [num_layers, max_tokens] (int64): for each decoder layer and each token of the
  flattened batch, the row to add after that layer. 0 (the zero row) for every token of a plain
  request and for padding.

Each patched decoder layer computes ``hidden + rows[index[layer, :num_tokens]]``: the same ops
whatever the batch holds, no per-request branch, reading buffers whose addresses never change,
so a captured CUDA graph stays valid and only the buffers' contents change between replays.
In eager mode (``gate`` set: the CPU default) a layer whose index is all zeros this step skips
the add entirely, so batches without steering pay one Python list look-up per layer.

The per-request payload travels in ``SamplingParams.extra_args[EXTRA_ARGS_KEY]`` (it crosses
the engine-core process boundary with the request): ``[[layer, float32 bytes], ...]``, one
entry per layer, scale already applied (engine.generation.steering builds it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

EXTRA_ARGS_KEY = "activations_playground.steer"


def vectors_of(params: Any, d_model: int) -> dict[int, np.ndarray] | None:
    """A request's steering vectors by layer from its SamplingParams, or None when plain."""
    extra = getattr(params, "extra_args", None)
    payload = extra.get(EXTRA_ARGS_KEY) if extra else None
    if not payload:
        return None
    vectors: dict[int, np.ndarray] = {}
    for layer, raw in payload:
        vector = np.frombuffer(bytes(raw), dtype="<f4")
        if vector.shape != (d_model,):  # the API checked it; a mismatch is a bug upstream
            raise ValueError(f"steering vector of {vector.size} values, want {d_model}")
        vectors[int(layer)] = vector
    return vectors


class SteeringBuffers:
    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        max_tokens: int,
        max_rows: int,
        device: torch.device,
        dtype: torch.dtype,
        eager: bool,
    ) -> None:
        self.num_layers, self.d_model = num_layers, d_model
        self.rows = torch.zeros(max_rows, d_model, device=device, dtype=dtype)
        self.index = torch.zeros(num_layers, max_tokens, device=device, dtype=torch.int64)
        # Eager only: which layers add this step (None: every layer always adds, as a
        # compiled graph must). Read by the patched decoder layer.
        self.gate: list[bool] | None = [False] * num_layers if eager else None
        self._written: list[tuple[int, int, int]] = []  # (layer, start, end) set last step
        self._cache: dict[str, tuple[int, dict[int, torch.Tensor] | None]] = {}
        self.steps_steered = 0  # forwards that added at least one vector (tests read it)

    def _device_vectors(self, req_id: str, params: Any) -> dict[int, torch.Tensor] | None:
        """Parsed once per request (keyed by the params object, which a preempted and
        resumed request keeps) and kept on the device."""
        cached = self._cache.get(req_id)
        if cached is not None and cached[0] == id(params):
            return cached[1]
        found = vectors_of(params, self.d_model)
        vectors = (
            None
            if found is None
            else {
                layer: torch.from_numpy(v.copy()).to(self.rows.device, self.rows.dtype)
                for layer, v in found.items()
            }
        )
        self._cache[req_id] = (id(params), vectors)
        return vectors

    def prepare(
        self,
        req_ids: Sequence[str],
        query_start_loc: np.ndarray,
        params_of: Mapping[str, Any],
    ) -> int:
        """Fill the buffers for a batch whose request ``i`` owns tokens
        ``query_start_loc[i]:query_start_loc[i + 1]``. Returns the rows used (0: plain)."""
        steered = []
        for i, req_id in enumerate(req_ids):
            state = params_of.get(req_id)
            vectors = self._device_vectors(req_id, getattr(state, "sampling_params", None))
            if vectors:
                steered.append((i, vectors))
        if len(self._cache) > 2 * len(req_ids) + 64:  # drop finished requests' vectors
            live = set(req_ids)
            self._cache = {k: v for k, v in self._cache.items() if k in live}
        if not steered and not self._written:
            return 0
        for layer, start, end in self._written:
            self.index[layer, start:end] = 0
            if self.gate is not None:
                self.gate[layer] = False
        self._written = []
        row = 1
        for i, vectors in steered:
            start, end = int(query_start_loc[i]), int(query_start_loc[i + 1])
            if end <= start:
                continue
            for layer, vector in vectors.items():
                if not 0 <= layer < self.num_layers or row >= self.rows.shape[0]:
                    raise ValueError(f"steering layer {layer} or row {row} out of range")
                self.rows[row].copy_(vector)
                self.index[layer, start:end] = row
                self._written.append((layer, start, end))
                if self.gate is not None:
                    self.gate[layer] = True
                row += 1
        if row > 1:
            self.steps_steered += 1
        return row - 1

    def delta(self, layer: int, num_tokens: int) -> torch.Tensor:
        """What the decoder layer ``layer`` adds to its [num_tokens, d_model] output."""
        return self.rows[self.index[layer, :num_tokens]]

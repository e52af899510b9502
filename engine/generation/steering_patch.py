"""vLLM plugin: per-request residual-stream steering (engine.generation.steering_buffers).

Installed by the project's one ``vllm.general_plugins`` entry point (``sampling_patch.register``)
in every process vLLM starts, and only for the pinned vLLM (0.32.0) while the sources it wraps
are the ones it was written against; otherwise it stays off with a warning and the API answers
steered requests 422 ``steering_unavailable``. It patches:

- ``LlamaDecoderLayer.forward``: after the block, ``hidden + rows[index[layer, :n]]`` (vLLM's
  Llama keeps the residual stream as ``hidden + residual`` between blocks, so adding to
  ``hidden`` adds to the stream after block ``layer``, HF's ``hidden_states[layer + 1]``);
- ``GPUModelRunner.load_model`` / ``CPUModelRunner.load_model``: attach the buffers to a
  supported model (LlamaForCausalLM: Llama-3.1, SmolLM2) before anything compiles or captures;
- ``GPUModelRunner._model_forward``: fill the buffers from the batch's request order
  (``input_batch.req_ids``, ``query_start_loc``) and each request's SamplingParams;
- ``WorkerBase.playground_steering_status``: what the API process asks (``collective_rpc``)
  to learn whether the worker can steer, and the model's width and depth.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from engine.generation.steering_buffers import SteeringBuffers
from engine.generation.vllm_pin import PINNED_VLLM, source_digest

STATUS_METHOD = "playground_steering_status"
# Vectors per request (protocol.MAX_STEER_VECTORS): rows a request can take in one step.
MAX_LAYERS_PER_REQUEST = 8
SUPPORTED_MODELS = ("LlamaForCausalLM",)
# sha256 of the sources the patches wrap (a change in vLLM turns steering off).
# _prepare_inputs: where query_start_loc gets the batch's token ranges in req_ids order.
FINGERPRINTS = {
    "LlamaDecoderLayer.forward": (
        "ab84e40134637a42186f2a12941ad6c585e0a473936b430d1758e941b6d3b715"
    ),
    "GPUModelRunner._model_forward": (
        "a8f98588a4656ef66b79d7c763ab95e763b54b8d5b0af6ddde3ee85f02453113"
    ),
    "GPUModelRunner._prepare_inputs": (
        "c31a77c123a09a04971543d691b8ecce045820a05578494fc58eea2d3c665662"
    ),
    "GPUModelRunner.load_model": (
        "9508e8f41530563d2a20a8450242c0f70551e190913318c24479d877cf44b1ef"
    ),
    "CPUModelRunner.load_model": (
        "270bdfc6670d8cba1cd407cb903f5ef9dc94a1ea896ebf27bfeca2c8da2b1470"
    ),
}
_MARK = "_playground_steering"

logger = logging.getLogger("vllm.plugins.activations_playground")


def _targets() -> dict[str, Any]:
    from vllm.model_executor.models.llama import LlamaDecoderLayer
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    return {
        "LlamaDecoderLayer.forward": LlamaDecoderLayer.forward,
        "GPUModelRunner._model_forward": GPUModelRunner._model_forward,
        "GPUModelRunner._prepare_inputs": GPUModelRunner._prepare_inputs,
        "GPUModelRunner.load_model": GPUModelRunner.__dict__["load_model"],
        "CPUModelRunner.load_model": CPUModelRunner.__dict__["load_model"],
    }


def _original(fn: Any) -> Any:
    return getattr(fn, "__wrapped__", fn) if getattr(fn, _MARK, False) else fn


def why_not() -> str | None:
    """Why steering cannot be installed in this vLLM, or None."""
    import vllm

    if vllm.__version__ != PINNED_VLLM:
        return f"vLLM {vllm.__version__} is not the pinned {PINNED_VLLM}"
    changed = [
        name
        for name, fn in _targets().items()
        if source_digest(_original(fn)) != FINGERPRINTS[name]
    ]
    if changed:
        return f"vLLM's {', '.join(changed)} changed from the version steering was written for"
    return None


def is_installed() -> bool:
    return all(
        getattr(fn, _MARK, False)
        for name, fn in _targets().items()
        if name != "GPUModelRunner._prepare_inputs"
    )


def install() -> bool:
    reason = why_not()
    if reason is not None:
        logger.warning("per-request steering NOT installed (steered requests get 422): %s", reason)
        return False
    if is_installed():
        return True
    from vllm.model_executor.models.llama import LlamaDecoderLayer
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    from vllm.v1.worker.worker_base import WorkerBase

    if not getattr(LlamaDecoderLayer.forward, _MARK, False):
        LlamaDecoderLayer.forward = _steered_layer_forward(LlamaDecoderLayer.forward)
    if not getattr(GPUModelRunner._model_forward, _MARK, False):
        GPUModelRunner._model_forward = _filling_model_forward(GPUModelRunner._model_forward)
    for runner in (GPUModelRunner, CPUModelRunner):
        if not getattr(runner.__dict__["load_model"], _MARK, False):
            runner.load_model = _attaching_load_model(runner.__dict__["load_model"])
    setattr(WorkerBase, STATUS_METHOD, _worker_status)
    logger.info("activations-playground: per-request steering installed for vLLM %s", PINNED_VLLM)
    return True


def uninstall() -> None:
    """Put vLLM's own methods back (tests; models already attached keep their buffers)."""
    from vllm.model_executor.models.llama import LlamaDecoderLayer
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    from vllm.v1.worker.worker_base import WorkerBase

    for owner, name in (
        (LlamaDecoderLayer, "forward"),
        (GPUModelRunner, "_model_forward"),
        (GPUModelRunner, "load_model"),
        (CPUModelRunner, "load_model"),
    ):
        fn = owner.__dict__[name]
        if getattr(fn, _MARK, False):
            setattr(owner, name, fn.__wrapped__)
    if STATUS_METHOD in WorkerBase.__dict__:
        delattr(WorkerBase, STATUS_METHOD)


def _mark(fn: Any) -> Any:
    setattr(fn, _MARK, True)
    return fn


def _steered_layer_forward(original: Any) -> Any:
    @functools.wraps(original)
    def forward(self, positions, hidden_states, residual, *args, **kwargs):
        hidden_states, residual = original(
            self, positions, hidden_states, residual, *args, **kwargs
        )
        layer = getattr(self, "playground_steer_layer", None)
        if layer is None:  # not attached (an unsupported model, or a drafter)
            return hidden_states, residual
        gate = self.playground_steer_gate
        # Compiled (gate None): always the same gather-add, the buffers hold zeros for plain
        # tokens. Eager: skipped when nothing in this batch steers at this layer.
        if gate is None or gate[layer]:
            n = hidden_states.shape[0]
            hidden_states = (
                hidden_states + self.playground_steer_rows[self.playground_steer_index[:n]]
            )
        return hidden_states, residual

    return _mark(forward)


def _filling_model_forward(original: Any) -> Any:
    @functools.wraps(original)
    def _model_forward(self, *args, **kwargs):
        buffers: SteeringBuffers | None = getattr(self, "playground_steering", None)
        if buffers is not None:
            num_reqs = self.input_batch.num_reqs
            buffers.prepare(
                self.input_batch.req_ids[:num_reqs], self.query_start_loc.np, self.requests
            )
        return original(self, *args, **kwargs)

    return _mark(_model_forward)


def _attaching_load_model(original: Any) -> Any:
    @functools.wraps(original)
    def load_model(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        attach(self)
        return result

    return _mark(load_model)


def _worker_status(worker: Any) -> dict[str, Any]:
    runner = getattr(worker, "model_runner", None)
    return getattr(runner, "playground_steering_status", None) or {
        "available": False,
        "reason": "the model runner has not attached steering",
    }


def attach(runner: Any) -> SteeringBuffers | None:
    """Give a loaded model's decoder layers the shared buffers; record why not otherwise."""
    model = runner.get_model()
    name = type(model).__name__
    inner: Any = getattr(model, "model", None)
    layers: Any = getattr(inner, "layers", None)
    reason = None
    if name not in SUPPORTED_MODELS or layers is None:
        reason = f"model class {name} is not one steering supports ({', '.join(SUPPORTED_MODELS)})"
    elif getattr(runner, "lora_config", None):
        reason = "LoRA adapters wrap the decoder layers"
    elif getattr(runner, "speculative_config", None):
        reason = "speculative decoding runs a drafter model"
    if reason is not None:
        logger.warning("per-request steering off for this model: %s", reason)
        runner.playground_steering = None
        runner.playground_steering_status = {"available": False, "reason": reason}
        return None
    config = runner.vllm_config
    hidden = int(config.model_config.get_hidden_size())
    num_layers = len(layers)
    compiled = not config.model_config.enforce_eager
    sizes = config.compilation_config.cudagraph_capture_sizes or [0]
    buffers = SteeringBuffers(
        num_layers=num_layers,
        d_model=hidden,
        max_tokens=max(int(runner.max_num_tokens), max(sizes)),
        max_rows=1 + int(runner.max_num_reqs) * MAX_LAYERS_PER_REQUEST,
        device=runner.device,
        dtype=config.model_config.dtype,
        eager=not compiled,
    )
    for i in range(inner.start_layer, inner.end_layer):
        layer = layers[i]
        layer.register_buffer("playground_steer_rows", buffers.rows, persistent=False)
        layer.register_buffer("playground_steer_index", buffers.index[i], persistent=False)
        layer.playground_steer_layer = i
        layer.playground_steer_gate = buffers.gate
    runner.playground_steering = buffers
    runner.playground_steering_status = {
        "available": True,
        "reason": None,
        "model_class": name,
        "d_model": hidden,
        "num_layers": num_layers,
        "compiled": compiled,
    }
    logger.info(
        "per-request steering attached to %s (%d layers, d_model %d, %s)",
        name,
        num_layers,
        hidden,
        "compiled: always-on gather-add" if compiled else "eager: gated per layer",
    )
    return buffers

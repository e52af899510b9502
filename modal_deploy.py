"""Modal deploy: the engine, the SAE service and the backend as three separately deployable apps.

Names are namespaced by ``PLAYGROUND_ENV`` (``staging`` by default, or ``prod``) so staging and prod
never share an app, a volume or a secret::

    PLAYGROUND_ENV=staging modal deploy modal_deploy.py::engine_app
    PLAYGROUND_ENV=staging modal deploy modal_deploy.py::sae_app
    PLAYGROUND_ENV=staging modal run modal_deploy.py::migrate --confirm-env staging
    PLAYGROUND_ENV=staging modal deploy modal_deploy.py::backend_app

The two model services each run in their own GPU container (nothing shared with the MAX injection
servers); the backend is CPU only and carries no weights. See docs/deploy.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import modal

from common.defaults import DEFAULT_MODEL_ID, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER

ENVIRONMENTS = ("staging", "prod")
GPU = "H100"
PYTHON_VERSION = "3.11"
HF_CACHE_DIR = "/hf-cache"
# Llama Scope's layer-16 residual SAE (SAELens release llama_scope_lxr_8x, id l16r_8x).
SAE_REPO = "fnlp/Llama3_1-8B-Base-LXR-8x"
SAE_FOLDER = f"Llama3_1-8B-Base-L{DEFAULT_SAE_LAYER}R-8x"
SAE_ROOT = f"{HF_CACHE_DIR}/saes"
SOURCE_PACKAGES = ("common", "engine", "backend")
# Libraries the backend never imports: keeping them out keeps its image small and CPU-only.
MODEL_LIBRARIES = ("torch", "transformers", "tokenizers", "tiktoken", "safetensors")
REPO_ROOT = Path(__file__).resolve().parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
# backend.db.migrate looks for alembic's scripts two levels above itself: /root/backend/db -> /.
MIGRATIONS_REMOTE_DIR = "/migrations"


@dataclass(frozen=True)
class Names:
    """Every Modal object name for one environment."""

    env: str

    @property
    def engine_app(self) -> str:
        return f"activations-engine-{self.env}"

    @property
    def sae_app(self) -> str:
        return f"activations-sae-{self.env}"

    @property
    def backend_app(self) -> str:
        return f"activations-backend-{self.env}"

    @property
    def hf_cache_volume(self) -> str:
        return f"hf-cache-{self.env}"

    @property
    def hf_secret(self) -> str:
        """Holds ``HF_TOKEN`` (the Llama weights are gated)."""
        return f"playground-hf-{self.env}"

    @property
    def backend_secret(self) -> str:
        """Holds ``DATABASE_URL`` and the ``PLAYGROUND_*`` service URLs."""
        return f"playground-backend-{self.env}"

    @property
    def service_secret(self) -> str:
        """One bearer token under three names: ``ENGINE_API_TOKEN``, ``SAE_SERVICE_API_TOKEN``
        (the services require it) and ``PLAYGROUND_SERVICE_TOKEN`` (the backend sends it)."""
        return f"playground-service-{self.env}"

    @property
    def proxy_auth_secret(self) -> str:
        """A Modal proxy-auth token for the backend to pass the engine's and SAE's proxy auth:
        ``PLAYGROUND_MODAL_PROXY_KEY`` (its id) and ``PLAYGROUND_MODAL_PROXY_SECRET``."""
        return f"playground-proxy-auth-{self.env}"


def deploy_env() -> str:
    env = os.environ.get("PLAYGROUND_ENV", "staging").strip().lower()
    if env not in ENVIRONMENTS:
        raise ValueError(f"PLAYGROUND_ENV must be one of {ENVIRONMENTS}, not {env!r}")
    return env


def project_dependencies(*extras: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Requirements from our pyproject (plus ``extras``), minus packages named in ``exclude``.

    Inside a running container the pyproject is not there and images are not rebuilt, so an
    empty list is fine.
    """
    if not PYPROJECT.exists():
        return []
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return [req for req in requirements if _requirement_name(req) not in exclude]


def _requirement_name(requirement: str) -> str:
    name = requirement
    for stop in "<>=!~[; ":
        name = name.split(stop, 1)[0]
    return name.strip().lower()


def _image(requirements: list[str], env: dict[str, str]) -> modal.Image:
    # Only our own packages are added, with every file (the page's static files, alembic's
    # migrations), not just the .py files Modal takes by default.
    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .uv_pip_install(*requirements)
        .env(env)
        .add_local_python_source(*SOURCE_PACKAGES, ignore=["**/__pycache__", "**/*.pyc"])
    )


NAMES = Names(deploy_env())
MODEL_SERVICE_ENV = {
    "PLAYGROUND_ENV": NAMES.env,
    # Fail closed: no service token (or an empty one), no start (common/auth.py).
    "PLAYGROUND_DEPLOYED": "1",
    "HF_HOME": HF_CACHE_DIR,
    "HF_HUB_ENABLE_HF_TRANSFER": "0",
    # The old engine's debug storage crashed staging; it stays off in every deployed image.
    "CONCORDANCE_ENABLE_FULLPASS_DEBUG": "0",
    # One JSON object per log line (docs/operations.md), the request id in each.
    "PLAYGROUND_LOG_FORMAT": "json",
}
ENGINE_ENV = {**MODEL_SERVICE_ENV, "ENGINE_MODEL": DEFAULT_MODEL_ID}
SAE_ENV = {
    **MODEL_SERVICE_ENV,
    "SAE_SERVICE_MODEL": DEFAULT_MODEL_ID,
    # The SAE service reads weights offline: `fetch_weights` puts both into the volume first.
    "SAE_SERVICE_SAE_DIRS": f"{SAE_ROOT}/{SAE_FOLDER}",
}
BACKEND_ENV = {
    "PLAYGROUND_ENV": NAMES.env,
    # Fail closed: PUBLIC_BASE_URL (from the backend secret) and the service token required.
    "PLAYGROUND_DEPLOYED": "1",
    "PLAYGROUND_LOG_FORMAT": "json",
    "PLAYGROUND_DEFAULT_SAE_ID": DEFAULT_SAE_ID,
    "PLAYGROUND_DEFAULT_SAE_LAYER": str(DEFAULT_SAE_LAYER),
    # No PLAYGROUND_CLIENT_IP_HEADER: on @modal.asgi_app Modal strips X-Forwarded-For and the
    # ASGI scope's client is the caller's address (backend/limits/identity.py).
    # The scheduled prune deletes previews older than this (playground prune --older-than).
    "PLAYGROUND_PRUNE_RETENTION": "7d",
}
# Container ceilings: a flood of requests queues or is refused; it never buys more GPUs.
MAX_GPU_CONTAINERS = 2
MAX_BACKEND_CONTAINERS = 4
# Daily, at a quiet hour (UTC).
PRUNE_SCHEDULE = "17 4 * * *"

hf_cache = modal.Volume.from_name(NAMES.hf_cache_volume, create_if_missing=True)
hf_secret = modal.Secret.from_name(NAMES.hf_secret, required_keys=["HF_TOKEN"])
backend_secret = modal.Secret.from_name(
    NAMES.backend_secret, required_keys=["DATABASE_URL", "PUBLIC_BASE_URL"]
)
service_secret = modal.Secret.from_name(
    NAMES.service_secret,
    required_keys=["ENGINE_API_TOKEN", "SAE_SERVICE_API_TOKEN", "PLAYGROUND_SERVICE_TOKEN"],
)
proxy_auth_secret = modal.Secret.from_name(
    NAMES.proxy_auth_secret,
    required_keys=["PLAYGROUND_MODAL_PROXY_KEY", "PLAYGROUND_MODAL_PROXY_SECRET"],
)

engine_image = _image(project_dependencies("gpu"), ENGINE_ENV)
sae_image = _image(project_dependencies(), SAE_ENV)
backend_image = _image(project_dependencies(exclude=MODEL_LIBRARIES), BACKEND_ENV).add_local_dir(
    REPO_ROOT / "migrations", MIGRATIONS_REMOTE_DIR, ignore=["**/__pycache__", "**/*.pyc"]
)

engine_app = modal.App(NAMES.engine_app)
sae_app = modal.App(NAMES.sae_app)
backend_app = modal.App(NAMES.backend_app)


# The two model services: a GPU container each, weights from the HF cache volume. Loading the
# 8B model takes minutes on a cold container, so start-up may take up to 20 minutes.
MODEL_SERVICE_OPTIONS = {
    "gpu": GPU,
    "volumes": {HF_CACHE_DIR: hf_cache},
    "secrets": [hf_secret, service_secret],
    "scaledown_window": 900,
    "max_containers": MAX_GPU_CONTAINERS,
    "startup_timeout": 1200,
    "timeout": 600,
}


# Both GPU endpoints sit behind Modal's proxy auth (Modal-Key/Modal-Secret headers) on top of
# their own bearer token: an unauthenticated request never reaches, or wakes, a container.
@engine_app.function(image=engine_image, **MODEL_SERVICE_OPTIONS)
@modal.concurrent(max_inputs=64)
@modal.asgi_app(requires_proxy_auth=True)
def engine_web():
    """The vLLM generation service (POST /generate, /tokenize; GET /health, /metrics)."""
    from common.logging_setup import configure_logging
    from engine.generation.app import create_app

    configure_logging("engine", vllm=True)
    return create_app()


@sae_app.function(image=sae_image, **MODEL_SERVICE_OPTIONS)
@modal.concurrent(max_inputs=16)
@modal.asgi_app(requires_proxy_auth=True)
def sae_web():
    """The SAE feature service (POST /extract_features, /analyze_features; GET /saes, /metrics)."""
    from common.logging_setup import configure_logging
    from engine.sae.app import create_app

    configure_logging("sae")
    return create_app()


@sae_app.function(
    image=sae_image,
    volumes={HF_CACHE_DIR: hf_cache},
    secrets=[hf_secret],
    timeout=3600,
    max_containers=1,
)
def fetch_weights() -> list[str]:
    """Download the model and the SAE into the HF cache volume (CPU only; run once per env).

    The engine (vLLM) would download the model itself; the SAE service never downloads.
    """
    from huggingface_hub import snapshot_download

    model = snapshot_download(DEFAULT_MODEL_ID, allow_patterns=["*.json", "*.safetensors"])
    sae = snapshot_download(SAE_REPO, allow_patterns=[f"{SAE_FOLDER}/*"], local_dir=SAE_ROOT)
    hf_cache.commit()
    return [model, f"{sae}/{SAE_FOLDER}"]


@backend_app.function(
    image=backend_image,
    secrets=[backend_secret, service_secret, proxy_auth_secret],
    scaledown_window=300,
    max_containers=MAX_BACKEND_CONTAINERS,
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def backend_web():
    """The product API and the /playground/activations page (GET /metrics behind
    PLAYGROUND_METRICS_TOKEN: put it in the backend secret)."""
    from backend.app import create_app
    from common.logging_setup import configure_logging

    configure_logging("backend")
    return create_app()


PRUNE_TIMEOUT_S = 600
PRUNE_MAX_SECONDS = PRUNE_TIMEOUT_S - 60  # the last batch and the goodbye fit in the rest


@backend_app.function(
    image=backend_image,
    secrets=[backend_secret],
    timeout=PRUNE_TIMEOUT_S,
    schedule=modal.Cron(PRUNE_SCHEDULE),
    max_containers=1,
)
def prune() -> str:
    """Scheduled: delete run previews older than PLAYGROUND_PRUNE_RETENTION (index rows stay,
    marked pruned) in short batches, as `playground prune --older-than` does; it stops well
    inside the function's timeout and the next run resumes where it stopped."""
    import asyncio

    from backend.cli import parse_duration, prune_database

    retention = parse_duration(os.environ.get("PLAYGROUND_PRUNE_RETENTION", "7d"))
    done = asyncio.run(
        prune_database(os.environ["DATABASE_URL"], retention, max_seconds=PRUNE_MAX_SECONDS)
    )
    return (
        f"{NAMES.env}: pruned {done.pruned} previews older than {retention} "
        f"({done.batches} batches, {done.per_s:.0f}/s)"
    )


@backend_app.function(image=backend_image, secrets=[backend_secret], timeout=600, max_containers=1)
def migrate(revision: str = "head", confirm_env: str = "") -> str:
    """Alembic upgrade against this environment's DATABASE_URL.

    ``confirm_env`` must name the environment, so a command pasted from staging's runbook cannot
    migrate prod by accident.
    """
    if confirm_env != NAMES.env:
        raise ValueError(f"pass --confirm-env {NAMES.env} to migrate the {NAMES.env} database")
    from backend.db.migrate import upgrade

    upgrade(os.environ["DATABASE_URL"], revision)
    return f"{NAMES.env} database at {revision}"

"""The Modal wiring, checked offline: import modal_deploy with the real `modal` package (no
credentials, nothing deployed) and read back what each app would deploy.

Modal has no public API to read a function's spec or an image's layers before deploying, so a few
private attributes of modal 1.6 are read here (`_spec_`, `_webhook_config`, image loaders).
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

modal = pytest.importorskip("modal")
from modal._image import _Image  # noqa: E402
from modal._utils.async_utils import synchronizer  # noqa: E402
from modal.mount import _Mount  # noqa: E402
from modal_proto import api_pb2  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def load(monkeypatch, env: str | None):
    """A fresh import of modal_deploy under PLAYGROUND_ENV=env (None: unset)."""
    if env is None:
        monkeypatch.delenv("PLAYGROUND_ENV", raising=False)
    else:
        monkeypatch.setenv("PLAYGROUND_ENV", env)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    sys.modules.pop("modal_deploy", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("modal_deploy")


def app_functions(app) -> dict:
    return dict(synchronizer._translate_in(app)._local_state.functions)


def image_layers(image) -> tuple[list[str], list[tuple[Path, str]]]:
    """Dockerfile commands (base first) and files mounted by an image, without building it."""
    commands: list[str] = []
    files: list[tuple[Path, str]] = []

    def visit(obj) -> None:
        if isinstance(obj, _Mount):
            for entry in obj._entries:
                files.extend(entry.get_files_to_upload())
            return
        if not isinstance(obj, _Image):
            return
        for dep in obj._deps():
            visit(dep)
        dockerfile_function = inspect.getclosurevars(obj._load).nonlocals.get("dockerfile_function")
        if dockerfile_function:
            commands.extend(dockerfile_function("2024.10").commands)

    visit(synchronizer._translate_in(image))
    return commands, files


def image_env(image) -> dict[str, str]:
    commands, _ = image_layers(image)
    env = {}
    for command in commands:
        if command.startswith("ENV "):
            key, _, value = command[4:].partition("=")
            env[key] = value
    return env


def pip_installs(image) -> str:
    commands, _ = image_layers(image)
    return " ".join(c for c in commands if "pip install" in c and "modal_requirements" not in c)


def names_of(objects) -> list[str]:
    return sorted(synchronizer._translate_in(obj)._name for obj in objects)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_three_apps_namespaced_by_environment(monkeypatch, env):
    deploy = load(monkeypatch, env)
    assert deploy.engine_app.name == f"activations-engine-{env}"
    assert deploy.sae_app.name == f"activations-sae-{env}"
    assert deploy.backend_app.name == f"activations-backend-{env}"
    assert set(app_functions(deploy.engine_app)) == {"engine_web"}
    assert set(app_functions(deploy.sae_app)) == {"sae_web", "fetch_weights"}
    assert set(app_functions(deploy.backend_app)) == {"backend_web", "migrate", "prune"}
    for fn in (deploy.engine_web, deploy.sae_web, deploy.fetch_weights):
        assert names_of(fn._spec_.volumes.values()) == [f"hf-cache-{env}"]
    for fn in (deploy.engine_web, deploy.sae_web):
        assert names_of(fn._spec_.secrets) == [f"playground-hf-{env}", f"playground-service-{env}"]
    assert names_of(deploy.fetch_weights._spec_.secrets) == [f"playground-hf-{env}"]
    assert names_of(deploy.backend_web._spec_.secrets) == [
        f"playground-backend-{env}",
        f"playground-proxy-auth-{env}",
        f"playground-service-{env}",
    ]
    for fn in (deploy.migrate, deploy.prune):
        assert names_of(fn._spec_.secrets) == [f"playground-backend-{env}"]
    for image in (deploy.engine_image, deploy.sae_image, deploy.backend_image):
        assert image_env(image)["PLAYGROUND_ENV"] == env


def test_default_environment_is_staging_and_unknown_is_refused(monkeypatch):
    assert load(monkeypatch, None).NAMES.env == "staging"
    with pytest.raises(ValueError, match="PLAYGROUND_ENV"):
        load(monkeypatch, "production-ish")


def test_model_services_own_a_gpu_container_with_the_hf_cache(monkeypatch):
    deploy = load(monkeypatch, "staging")
    for fn in (deploy.engine_web, deploy.sae_web):
        spec = fn._spec_
        assert spec.gpus == "H100"
        assert list(spec.volumes) == [deploy.HF_CACHE_DIR]
        raw = synchronizer._translate_in(fn)
        assert raw._webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    # Separate apps, so separate containers: no GPU shared with anything else.
    assert deploy.engine_web._spec_.image is not deploy.sae_web._spec_.image

    engine_env = image_env(deploy.engine_image)
    assert engine_env["HF_HOME"] == deploy.HF_CACHE_DIR
    assert engine_env["ENGINE_MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert engine_env["CONCORDANCE_ENABLE_FULLPASS_DEBUG"] == "0"
    assert "vllm" in pip_installs(deploy.engine_image)
    sae_env = image_env(deploy.sae_image)
    assert sae_env["HF_HOME"] == deploy.HF_CACHE_DIR
    assert sae_env["SAE_SERVICE_MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "torch" in pip_installs(deploy.sae_image)
    # The SAE service never downloads: its SAE folder lies in the volume fetch_weights fills.
    assert sae_env["SAE_SERVICE_SAE_DIRS"].startswith(deploy.HF_CACHE_DIR + "/")
    assert deploy.fetch_weights._spec_.gpus is None


def test_backend_is_cpu_only_and_carries_no_weights(monkeypatch):
    deploy = load(monkeypatch, "staging")
    for fn in (deploy.backend_web, deploy.migrate):
        assert fn._spec_.gpus is None
        assert fn._spec_.volumes == {}
    raw = synchronizer._translate_in(deploy.backend_web)
    assert raw._webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    installs = pip_installs(deploy.backend_image)
    assert "fastapi" in installs and "asyncpg" in installs
    for library in ("torch", "transformers", "vllm", "safetensors"):
        assert f"'{library}" not in installs, library
    env = image_env(deploy.backend_image)
    assert "HF_HOME" not in env and "HF_TOKEN" not in env
    assert env["PLAYGROUND_DEFAULT_SAE_ID"] == "llama_scope_lxr_8x"


def test_images_ship_our_sources_with_the_page_and_migrations(monkeypatch):
    deploy = load(monkeypatch, "staging")
    _, files = image_layers(deploy.backend_image)
    remote = {str(path) for _, path in files}
    assert "/root/backend/page/router.py" in remote
    static = REPO_ROOT / "backend" / "page" / "static"
    for page_file in static.rglob("*"):  # the page's ES modules live in static/js/
        if page_file.is_file():
            relative = page_file.relative_to(static).as_posix()
            assert f"/root/backend/page/static/{relative}" in remote
    # backend.db.migrate resolves alembic's folder as /migrations inside the container.
    assert "/migrations/env.py" in remote
    versions = REPO_ROOT / "migrations" / "versions"
    assert {f"/migrations/versions/{p.name}" for p in versions.glob("*.py")} <= remote
    assert not any(path.endswith(".pyc") or "__pycache__" in path for path in remote)
    _, engine_files = image_layers(deploy.engine_image)
    assert any(str(path).startswith("/root/engine/") for _, path in engine_files)


def test_migrate_refuses_another_environment(monkeypatch):
    deploy = load(monkeypatch, "staging")
    with pytest.raises(ValueError, match="--confirm-env staging"):
        deploy.migrate.local(confirm_env="prod")
    deploy = load(monkeypatch, "prod")
    with pytest.raises(ValueError, match="--confirm-env prod"):
        deploy.migrate.local()


def test_backend_imports_without_the_model_libraries(monkeypatch):
    """The backend image leaves torch & co. out: the backend must not import them."""
    deploy = load(monkeypatch, "staging")
    blocked = [*deploy.MODEL_LIBRARIES, "vllm"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # any import of it raises ImportError\n"
        "from backend.app import create_app\n"
        "import backend.db.migrate, backend.page.router\n"
        "create_app()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]


def load_settings(fn) -> dict:
    """What a function would deploy with that its spec does not show (modal 1.6's loader)."""
    return inspect.getclosurevars(synchronizer._translate_in(fn)._load).nonlocals


def test_gpu_endpoints_need_proxy_auth_and_a_token(monkeypatch):
    deploy = load(monkeypatch, "staging")
    for fn in (deploy.engine_web, deploy.sae_web):
        assert synchronizer._translate_in(fn)._webhook_config.requires_proxy_auth is True
    # The backend is the public face: no proxy auth, and it carries the proxy-auth token and
    # the service token that the GPU endpoints require.
    assert (
        synchronizer._translate_in(deploy.backend_web)._webhook_config.requires_proxy_auth is False
    )
    secrets = {synchronizer._translate_in(s)._name: s for s in deploy.backend_web._spec_.secrets}
    assert set(secrets) >= {"playground-service-staging", "playground-proxy-auth-staging"}
    env = image_env(deploy.backend_image)
    # On asgi_app Modal strips X-Forwarded-For: the limits key on the ASGI peer (issue 20).
    assert "PLAYGROUND_CLIENT_IP_HEADER" not in env
    # Every deployed service fails closed (no token or no PUBLIC_BASE_URL: no start).
    for image in (deploy.backend_image, deploy.engine_image, deploy.sae_image):
        assert image_env(image)["PLAYGROUND_DEPLOYED"] == "1"


def test_every_function_has_a_container_ceiling(monkeypatch):
    deploy = load(monkeypatch, "staging")
    functions = {
        **app_functions(deploy.engine_app),
        **app_functions(deploy.sae_app),
        **app_functions(deploy.backend_app),
    }
    ceilings = {}
    for name in functions:
        settings = load_settings(getattr(deploy, name))["autoscaler_settings"]
        ceilings[name] = settings.max_containers
    assert all(ceilings.values()), ceilings
    assert ceilings["engine_web"] == ceilings["sae_web"] == deploy.MAX_GPU_CONTAINERS <= 2


def test_scheduled_prune_with_a_retention(monkeypatch):
    deploy = load(monkeypatch, "staging")
    schedule = load_settings(deploy.prune)["schedule"]
    assert isinstance(schedule, modal.Cron)
    assert schedule.proto_message.cron.cron_string == deploy.PRUNE_SCHEDULE
    assert image_env(deploy.backend_image)["PLAYGROUND_PRUNE_RETENTION"] == "7d"
    assert deploy.prune._spec_.gpus is None


def test_backend_sends_the_proxy_auth_and_service_token():
    """The headers the backend's upstream clients send, from the secrets' variables."""
    from backend.settings import Settings

    settings = Settings(
        playground_service_token="svc-tok",
        playground_modal_proxy_key="wk-1",
        playground_modal_proxy_secret="ws-2",
    )
    assert settings.upstream_headers() == {
        "authorization": "Bearer svc-tok",
        "modal-key": "wk-1",
        "modal-secret": "ws-2",
    }
    for secret in ("svc-tok", "ws-2"):
        assert secret not in repr(settings)

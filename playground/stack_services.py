"""`playground up`'s parts: which engine and SAE services to start (or the remote ones to use)
and the backend's service, configured for them; stack.py starts, watches and stops them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.defaults import DEMO_MODEL_ID
from common.services import Service, free_port
from playground.console import say
from playground.local_models import (
    ensure_demo_sae,
    ensure_readable_model,
    ensure_tiny_model,
    ensure_trained_sae,
)


class StartupFailed(RuntimeError):
    pass


def _default_sae(sae_url: str, token: str) -> tuple[str, int] | None:
    """The SAE service's default SAE, so the backend's default matches what is served."""
    try:
        headers = {"authorization": f"Bearer {token}"}
        body = httpx.get(sae_url.rstrip("/") + "/saes", headers=headers, timeout=10).json()
        return body["default"]["sae_id"], int(body["default"]["layer"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class ModelServices:
    to_start: list[Service]  # none for a remote URL
    engine_url: str
    sae_url: str
    served_model_id: str | None  # the name the local engine answers with; None when remote


def model_services(
    args: argparse.Namespace, data_dir: Path, start: Callable[[Service], None]
) -> ModelServices:
    """Engine and SAE services, each handed to ``start`` as soon as what it needs is there
    (the engine before the SAE folder is resolved: that imports torch), both base URLs, and
    the model's name."""
    logs = data_dir / "logs"
    model = args.model
    local_default = model is None
    served_name = model
    if local_default and not (args.engine_url and args.sae_url):
        built = ensure_tiny_model(data_dir) if args.tiny else ensure_readable_model(data_dir)
        model = str(built)
        # The readable demo answers as the model it is, not as a folder under .data.
        served_name = model if args.tiny else DEMO_MODEL_ID
    services: list[Service] = []
    engine_url, sae_url = args.engine_url, args.sae_url
    if engine_url:
        report_remote("engine", engine_url)
    else:
        engine = Service(
            "engine",
            ["engine", "--model", model, "--served-model-name", served_name],
            free_port(),
            logs / "engine.log",
            {"ENGINE_API_TOKEN": args.service_token},
        )
        services.append(engine)
        start(engine)
        engine_url = engine.url
    if sae_url:
        report_remote("sae", sae_url)
    else:
        sae_dirs = args.sae_dirs or args.env_sae_dirs
        if not sae_dirs:
            if not Path(model).is_dir():
                raise StartupFailed("--model is not a local folder: pass --sae-dir or --sae-url")
            if local_default and not args.tiny:
                sae_dirs = [ensure_trained_sae(Path(model), data_dir)]
            else:  # the tiny model, or a model folder given without an SAE: a random demo SAE
                sae_dirs = [ensure_demo_sae(Path(model), data_dir)]
        sae_args = ["sae", "--model", model, "--model-id", served_name]
        for folder in sae_dirs:
            sae_args += ["--sae-dir", str(folder)]
        sae_env = {"SAE_SERVICE_API_TOKEN": args.service_token}
        if not args.engine_url:
            # Both on this host: keep the SAE service off the cores vLLM's CPU workers spin on.
            sae_env["SAE_SERVICE_TORCH_THREADS"] = str(args.sae_torch_threads)
        sae = Service("sae", sae_args, free_port(), logs / "sae.log", sae_env)
        services.append(sae)
        start(sae)
        sae_url = sae.url
    return ModelServices(
        services,
        engine_url.rstrip("/"),
        sae_url.rstrip("/"),
        None if args.engine_url else served_name,
    )


def report_remote(name: str, url: str) -> None:
    try:
        ok = httpx.get(url.rstrip("/") + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        ok = False
    say(f"==> {name}: remote at {url} ({'healthy' if ok else 'NOT answering /health yet'})")


def backend_service(
    args: argparse.Namespace, data_dir: Path, database_url: str, models: ModelServices
) -> Service:
    env = {
        "DATABASE_URL": database_url,
        "PLAYGROUND_ACTIVATIONS_HF_URL": models.engine_url,
        "PLAYGROUND_SAE_URL": models.sae_url,
        "PLAYGROUND_DATA_DIR": str(data_dir),
        "PLAYGROUND_SERVICE_TOKEN": args.service_token,
    }
    if models.served_model_id:
        # The page's default model and failed runs' model_id name what this engine serves.
        env["PLAYGROUND_DEFAULT_MODEL_ID"] = models.served_model_id
    default_sae = _default_sae(models.sae_url, args.service_token)
    if default_sae and not args.backend_default_sae_id:
        env["PLAYGROUND_DEFAULT_SAE_ID"] = default_sae[0]
        env["PLAYGROUND_DEFAULT_SAE_LAYER"] = str(default_sae[1])
    # Migrations already ran above, whichever database it is.
    command = ["backend", "--no-migrate"]
    return Service("backend", command, args.port, data_dir / "logs" / "backend.log", env)

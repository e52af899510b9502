"""`playground up`'s arguments: every flag with its environment default (UpSettings, read
once here), and the one service token the started services share. The supervision that runs
them is ``stack.py``."""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from common.defaults import DEFAULT_DATA_DIR
from playground.settings import UpSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = UpSettings()
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=env.playground_data_dir,
        help="Postgres data, built models, logs "
        f"(env PLAYGROUND_DATA_DIR; default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        default=env.playground_port,
        help="the backend's port, which serves the page (env PLAYGROUND_PORT; default 8000)",
    )
    parser.add_argument(
        "--host",
        metavar="HOST",
        default=env.playground_host,
        help="the backend's bind address (env PLAYGROUND_HOST; default 127.0.0.1)",
    )
    parser.add_argument(
        "--model",
        metavar="PATH_OR_ID",
        default=env.playground_model,
        help="model folder or HF id for the engine and the SAE service "
        "(env PLAYGROUND_MODEL; default: the readable demo model, built on first use)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=env.playground_tiny,
        help="serve the tiny random-weight Llama-3.1 and a random SAE (fast; what the tests use) "
        "instead of the readable demo, SmolLM2-135M-Instruct with a trained SAE "
        "(env PLAYGROUND_TINY)",
    )
    parser.add_argument(
        "--sae-dir",
        metavar="DIR",
        action="append",
        dest="sae_dirs",
        type=Path,
        default=None,
        help="SAE folder, repeatable, the first is the default (env PLAYGROUND_SAE_DIRS, "
        "comma-separated; default: the demo SAE at layer 16, built on first use)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=env.database_url,
        help="external Postgres (env DATABASE_URL; default: embedded, in DATA_DIR/pg)",
    )
    parser.add_argument(
        "--engine-url",
        metavar="URL",
        default=env.playground_activations_hf_url,
        help="use a running engine instead of starting one (env PLAYGROUND_ACTIVATIONS_HF_URL)",
    )
    parser.add_argument(
        "--sae-url",
        metavar="URL",
        default=env.playground_sae_url,
        help="use a running SAE service instead of starting one (env PLAYGROUND_SAE_URL)",
    )
    parser.add_argument(
        "--startup-timeout",
        metavar="SECONDS",
        type=float,
        default=env.playground_startup_timeout_s,
        help="seconds each service may take to become healthy "
        "(env PLAYGROUND_STARTUP_TIMEOUT_S; default 900)",
    )
    # Not flags: read once here with the rest of the environment.
    parser.set_defaults(
        env_sae_dirs=env.playground_sae_dirs,
        sae_torch_threads=env.sae_service_torch_threads,
        backend_default_sae_id=env.playground_default_sae_id,
        remote_service_token=env.playground_service_token,
        metrics_token_set=env.playground_metrics_token is not None,
    )


def service_token(args: argparse.Namespace) -> str:
    """One bearer token for the engine, the SAE service and the backend that calls them: fresh
    on every start, or the remote services' own (PLAYGROUND_SERVICE_TOKEN) when one is remote."""
    remote = args.engine_url or args.sae_url
    if remote and args.remote_service_token is not None:
        return args.remote_service_token.get_secret_value()
    return secrets.token_urlsafe(32)

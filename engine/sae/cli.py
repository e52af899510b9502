"""`playground sae`: serve the SAE service."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="HF model folder (env SAE_SERVICE_MODEL)")
    parser.add_argument(
        "--sae-dir",
        action="append",
        dest="sae_dirs",
        help="SAE folder (SAELens or Llama Scope layout) or a folder of them; repeatable; "
        "the first is the default SAE (env SAE_SERVICE_SAE_DIRS, comma-separated)",
    )
    parser.add_argument("--model-id", help="name reported as model_id (default: --model)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from common.logging_setup import configure_logging
    from engine.sae.app import create_app
    from engine.sae.settings import Settings

    configure_logging("sae")
    overrides = {
        key: value
        for key, value in {
            "model": args.model,
            "sae_dirs": args.sae_dirs,
            "model_id": args.model_id,
            "device": args.device,
            "dtype": args.dtype,
        }.items()
        if value is not None
    }
    app = create_app(Settings(**overrides))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", log_config=None)
    return 0

"""`playground engine`: serve the vLLM engine over HTTP (settings from ENGINE_* env, flags win)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="HF model id or local folder (ENGINE_MODEL)")
    parser.add_argument("--served-model-name", help="model_id reported in answers")
    parser.add_argument("--max-model-len", type=int, help="context length (ENGINE_MAX_MODEL_LEN)")
    parser.add_argument("--dtype", help="vLLM dtype (ENGINE_DTYPE)")
    parser.add_argument("--load-format", help="vLLM load format, e.g. dummy (ENGINE_LOAD_FORMAT)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="info")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from common.logging_setup import configure_logging
    from engine.generation.app import create_app
    from engine.generation.settings import EngineSettings

    configure_logging("engine", args.log_level, vllm=True)

    overrides = {
        name: getattr(args, name)
        for name in ("model", "served_model_name", "max_model_len", "dtype", "load_format")
        if getattr(args, name) is not None
    }
    settings = EngineSettings(**overrides)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,  # uvicorn's loggers go through ours (request id, format)
        timeout_graceful_shutdown=10,
    )
    return 0

"""vLLM's AsyncLLM for the configured model: built once (in the app's lifespan), shut down once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from engine.generation.settings import EngineSettings

if TYPE_CHECKING:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def device_name() -> str:
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return "cpu"
    try:
        return f"{current_platform.device_type}: {current_platform.get_device_name()}"
    except Exception:  # a name is nice to have; the type is enough
        return current_platform.device_type


def engine_kwargs(settings: EngineSettings) -> dict[str, Any]:
    """Map our settings onto vLLM's engine arguments (also taken by the offline `LLM`, which
    the benchmark uses as its ceiling); the same code serves a GPU and the CPU build."""
    cpu = on_cpu()
    return dict(
        model=settings.model,
        served_model_name=settings.model_id,
        dtype=settings.dtype or ("float32" if cpu else "auto"),
        max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        # On CPU vLLM otherwise sizes the KV cache from most of the machine's RAM.
        kv_cache_memory_bytes=settings.cpu_kv_cache_bytes if cpu else None,
        download_dir=str(settings.hf_cache_dir) if settings.hf_cache_dir else None,
        load_format=settings.load_format,
        enforce_eager=cpu if settings.enforce_eager is None else settings.enforce_eager,
        max_num_seqs=settings.max_num_seqs,
        seed=settings.seed,
        disable_log_stats=True,
    )


def engine_args(settings: EngineSettings) -> AsyncEngineArgs:
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs(**engine_kwargs(settings))


@asynccontextmanager
async def open_engine(settings: EngineSettings) -> AsyncIterator[AsyncLLM]:
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(engine_args(settings))
    try:
        yield engine
    finally:
        logger.info("shutting the vLLM engine down")
        engine.shutdown()

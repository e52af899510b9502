"""vLLM's AsyncLLM for the configured model: built once (in the app's lifespan), shut down once."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from engine.generation.leftovers import descendants, reap
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


# vLLM 0.32 picks its Model Runner V2 wherever Triton is (GPUs); per-request steering patches
# the V1 runner (engine.generation.steering_patch), so a steering engine asks for V1 unless the
# operator chose. Without this, steering reports itself unavailable there (422), never wrong.
V2_RUNNER_ENV = "VLLM_USE_V2_MODEL_RUNNER"


def prefer_steerable_runner(settings: EngineSettings) -> None:
    if settings.max_steer_vectors > 0 and V2_RUNNER_ENV not in os.environ:
        os.environ[V2_RUNNER_ENV] = "0"  # inherited by the engine-core process
        logger.info("%s=0: steering needs vLLM's V1 model runner", V2_RUNNER_ENV)


def stat_loggers(settings: EngineSettings) -> list[Any] | None:
    """vLLM's Prometheus stat logger when metrics are on: the ``vllm:*`` metrics vLLM's own
    server exposes, in prometheus_client's default registry. Passed as our only stat logger,
    so vLLM's periodic log line stays off (``disable_log_stats`` above)."""
    if not settings.metrics:
        return None
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    return [PrometheusStatLogger]


@asynccontextmanager
async def open_engine(settings: EngineSettings) -> AsyncIterator[AsyncLLM]:
    from vllm.v1.engine.async_llm import AsyncLLM

    prefer_steerable_runner(settings)
    engine = AsyncLLM.from_engine_args(engine_args(settings), stat_loggers=stat_loggers(settings))
    try:
        yield engine
    finally:
        logger.info("shutting the vLLM engine down")
        below = descendants()  # before the core exits and its workers lose their parent
        engine.shutdown()
        reap(below)

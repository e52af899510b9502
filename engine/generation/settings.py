"""The engine service's one settings object (env prefix ``ENGINE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.auth import DEPLOYED_ENV, checked_token
from common.defaults import DEFAULT_MODEL_ID

GiB = 1 << 30


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINE_", env_ignore_empty=True, extra="ignore")

    model: str = Field(DEFAULT_MODEL_ID, description="HF model id or local model folder")
    served_model_name: str | None = Field(
        None, description="model_id reported in answers (default: the model id or folder)"
    )
    dtype: str | None = Field(
        None, description="vLLM dtype; default float32 on CPU, the checkpoint's dtype on GPU"
    )
    max_model_len: int = Field(4096, ge=16, description="context length (prompt + output)")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    cpu_kv_cache_bytes: int = Field(
        1 * GiB, ge=1 << 20, description="KV cache size on CPU (vLLM reserves most RAM otherwise)"
    )
    tensor_parallel_size: int = Field(1, ge=1)
    hf_cache_dir: Path | None = Field(None, description="where HF weights are downloaded")
    load_format: str = Field("auto", description="vLLM load format ('dummy': random weights)")
    enforce_eager: bool | None = Field(
        None,
        description="skip torch.compile; default on for CPU, where compiling takes minutes",
    )
    max_num_seqs: int | None = Field(None, ge=1, description="vLLM's running-batch cap")
    seed: int = Field(0, description="engine seed (requests without a seed)")
    max_batch_requests: int = Field(64, ge=1, le=1024, description="bound on /generate/batch")
    max_output_tokens: int = Field(4096, ge=1, description="bound on max_tokens")
    max_steer_vectors: int = Field(
        8, ge=0, le=8, description="bound on a request's `steer` vectors (0: steering off)"
    )
    max_steer_scale: float = Field(
        1000.0, gt=0.0, le=1e6, description="bound on |scale| of a steering vector"
    )
    api_token: SecretStr | None = Field(
        None,
        description="bearer token every route but /health requires (unset: no auth, only "
        "where PLAYGROUND_DEPLOYED is not set; empty: an error)",
    )
    deployed: bool = Field(
        False, validation_alias=DEPLOYED_ENV, description="set by modal_deploy.py: fail closed"
    )
    max_body_bytes: int = Field(
        8 << 20, ge=1024, le=1 << 30, description="request bodies over this answer 413"
    )
    metrics: bool = Field(
        True,
        description="GET /metrics: vLLM's engine metrics (its Prometheus stat logger), HTTP "
        "metrics and ours (docs/operations.md); off: none of them are recorded",
    )

    @model_validator(mode="after")
    def _check(self) -> EngineSettings:
        if not self.model:
            raise ValueError("ENGINE_MODEL must name a model")
        checked_token(self.api_token, env_name="ENGINE_API_TOKEN", deployed=self.deployed)
        return self

    @property
    def model_id(self) -> str:
        return self.served_model_name or self.model

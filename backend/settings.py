"""The backend's one settings object, read from the environment (names as in the spec)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.defaults import DEFAULT_DATA_DIR, DEFAULT_MODEL_ID, DEFAULT_SAE_ID, DEFAULT_SAE_LAYER


class Settings(BaseSettings):
    """Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    # Postgres; None means "start the embedded server in PLAYGROUND_DATA_DIR/pg" (CLI only).
    database_url: str | None = None
    playground_data_dir: Path = DEFAULT_DATA_DIR

    # Upstreams.
    playground_activations_hf_url: str = "http://127.0.0.1:8001"
    playground_sae_url: str = "http://127.0.0.1:8002"
    playground_llama_8b_url: str | None = None
    playground_qwen_14b_url: str | None = None
    # Upstream model name the MAX server serves for the `qwen-14b` key.
    playground_qwen_14b_model: str = "qwen-14b"
    playground_admin_key: str | None = None
    public_base_url: str | None = None

    # Activations defaults.
    playground_default_model_id: str = DEFAULT_MODEL_ID
    # Other model ids the engine may be asked for; anything else means the default.
    playground_activation_models: list[str] = Field(default_factory=list)
    playground_default_sae_id: str = DEFAULT_SAE_ID
    playground_default_sae_layer: int = Field(DEFAULT_SAE_LAYER, ge=0, le=255)

    # Timeouts (seconds).
    playground_engine_timeout_s: float = Field(120.0, gt=0)
    playground_sae_timeout_s: float = Field(60.0, gt=0)
    playground_injection_timeout_s: float = Field(300.0, gt=0)
    playground_connect_timeout_s: float = Field(5.0, gt=0)
    playground_health_timeout_s: float = Field(2.0, gt=0)
    playground_db_timeout_s: float = Field(10.0, gt=0)

    # False: commits stop waiting for the WAL flush (synchronous_commit=off). Runs are preview
    # data, so a deploy may trade the last fraction of a second of runs on a crash for ~0.7 ms.
    playground_durable_writes: bool = True

    # Pool.
    playground_db_pool_min: int = Field(1, ge=0, le=100)
    playground_db_pool_max: int = Field(10, ge=1, le=100)

    # Input bounds (the request models carry hard caps; these may only tighten them).
    playground_max_prompt_chars: int = Field(16_000, ge=1, le=100_000)
    playground_max_tokens: int = Field(2048, ge=1, le=8192)

    # The feature fold (backend/features/fold.py): run in the background of this process
    # (several processes may; one folds at a time), this many queued runs per transaction,
    # and a look at the queue at least this often when idle.
    playground_feature_fold: bool = True
    playground_fold_batch: int = Field(64, ge=1, le=1000)
    playground_fold_idle_s: float = Field(2.0, gt=0, le=3600)

    @field_validator(
        "playground_activations_hf_url",
        "playground_sae_url",
        "playground_llama_8b_url",
        "playground_qwen_14b_url",
    )
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("playground_db_pool_max")
    @classmethod
    def _pool_bounds(cls, value: int, info) -> int:
        if value < info.data.get("playground_db_pool_min", 1):
            raise ValueError("playground_db_pool_max must be >= playground_db_pool_min")
        return value

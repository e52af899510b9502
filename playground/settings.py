"""`playground up`'s one settings object, read from the environment like the services'
(CLI flags win; names as in docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.defaults import DEFAULT_DATA_DIR


class UpSettings(BaseSettings):
    """Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    playground_data_dir: Path = DEFAULT_DATA_DIR
    playground_port: int = Field(8000, ge=1, le=65535)
    playground_host: str = "127.0.0.1"
    # None: the local default model (built on first use): the readable demo, or with
    # playground_tiny the tiny random-weight Llama-3.1.
    playground_model: str | None = None
    playground_tiny: bool = False
    # Comma-separated in the environment; empty: the demo SAE of the local model.
    playground_sae_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Set: use that Postgres / running service instead of starting one.
    database_url: str | None = None
    playground_activations_hf_url: str | None = None
    playground_sae_url: str | None = None
    playground_startup_timeout_s: float = Field(900.0, gt=0)
    # The SAE service's torch threads when it shares this host with a local vLLM CPU engine.
    sae_service_torch_threads: int = Field(1, ge=1)
    # Set: the backend keeps it; unset: the backend's default SAE is the one the SAE service serves.
    playground_default_sae_id: str | None = None
    # The remote engine/SAE service's token, when one of them is remote; otherwise every start
    # makes a fresh one for the services it starts.
    playground_service_token: SecretStr | None = None
    # The backend's /metrics token (the backend child reads it itself); `up` only says whether.
    playground_metrics_token: SecretStr | None = None

    @field_validator("playground_sae_dirs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

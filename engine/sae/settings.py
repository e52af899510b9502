"""The SAE service's one settings object (env prefix ``SAE_SERVICE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.auth import DEPLOYED_ENV, checked_token
from engine.sae import batching, encode_batch, stream_cache
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SAE_SERVICE_", env_ignore_empty=True, extra="ignore"
    )

    # HF folder (or HF id already in the local cache: no hub at run time).
    model: str
    # Name reported as ``model_id``; defaults to ``model``.
    model_id: str | None = None
    # SAE folders, each a SAELens or Llama Scope layout, or a folder of such folders. The first
    # folder's SAE is the default. Env: comma-separated paths.
    sae_dirs: Annotated[list[Path], NoDecode] = Field(min_length=1)
    device: str = "auto"  # auto -> cuda if available, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 GPU, f32 CPU
    max_loaded_saes: int = Field(default=4, ge=1, le=64)
    # Keep only the decoder blocks that some registered SAE reads (blocks above are never run).
    drop_unused_layers: bool = True
    max_sequence_tokens: int = Field(default=8192, ge=1)
    max_top_k: int = Field(default=256, ge=1)
    max_feature_ids: int = Field(default=256, ge=1)
    # Batching: requests arriving while a batch runs are gathered into the next one (the
    # defaults and what each bounds: engine/sae/batching.py).
    max_batch_size: int = Field(default=batching.MAX_BATCH_SIZE, ge=1)
    max_batch_tokens: int = Field(default=batching.MAX_BATCH_TOKENS, ge=1)
    batch_wait_ms: float = Field(default=batching.BATCH_WAIT_MS, ge=0)
    # A batch is split into forwards whose padded size stays within this x their real tokens.
    max_padding_ratio: float = Field(default=encode_batch.MAX_PADDING_RATIO, ge=1.0)
    encode_chunk_tokens: int = Field(default=encode_batch.ENCODE_CHUNK_TOKENS, ge=1)
    labels_filename: str = LABELS_FILENAME
    examples_filename: str = EXAMPLES_FILENAME  # max-activating contexts (docs/sae.md)
    # CPU threads for torch (None: torch's default, every core). A vLLM CPU engine on the same
    # host keeps its cores busy for about a second after each request; sharing them makes our
    # OpenMP barriers wait on starved threads (10 ms becomes 500+ ms), so `up` sets 1 there.
    torch_threads: int | None = Field(default=None, ge=1, le=1024)
    # Bearer token every route but /health requires (None: no auth, only where
    # PLAYGROUND_DEPLOYED is not set; an empty value is an error).
    api_token: SecretStr | None = None
    # Set by modal_deploy.py: the service fails closed (no token, no start).
    deployed: bool = Field(default=False, validation_alias=DEPLOYED_ENV)
    # Request bodies over this many bytes answer 413 before parsing.
    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30)
    # Jobs waiting for the batcher beyond this answer 503 overloaded (with Retry-After).
    max_queued_jobs: int = Field(default=256, ge=1, le=100_000)
    # Streams' KV caches (incremental extraction, engine/sae/stream_cache.py): at most this
    # many streams and bytes (least recently used evicted first), each dropped after this many
    # idle seconds.
    stream_cache_max_streams: int = Field(default=stream_cache.MAX_STREAMS, ge=0, le=100_000)
    stream_cache_max_bytes: int = Field(default=stream_cache.MAX_BYTES, ge=0, le=1 << 40)
    stream_cache_idle_s: float = Field(default=stream_cache.IDLE_S, gt=0, le=86_400)
    # GET /metrics (docs/operations.md); off: nothing is measured and there is no route.
    metrics: bool = True

    @field_validator("sae_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        checked_token(self.api_token, env_name="SAE_SERVICE_API_TOKEN", deployed=self.deployed)
        return self

    @property
    def served_model_id(self) -> str:
        return self.model_id or self.model

"""The backend's one settings object, read from the environment (names as in the spec)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
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
    playground_admin_key: SecretStr | None = None
    # Bearer token sent to the engine and the SAE service (their ENGINE_API_TOKEN /
    # SAE_SERVICE_API_TOKEN); `playground up` sets all three to one fresh value per start.
    playground_service_token: SecretStr | None = None
    # Modal proxy auth in front of the engine and SAE web endpoints (Modal-Key/Modal-Secret).
    playground_modal_proxy_key: SecretStr | None = None
    playground_modal_proxy_secret: SecretStr | None = None
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
    # The engine's and SAE service's /health are asked at most this often; in between the
    # health route answers from the last result (with its age). Longer than the GPU apps'
    # scale-down window (900 s), so a page left open keeps no GPU container alive. 0: always ask.
    playground_health_interval_s: float = Field(1200.0, ge=0, le=86_400)
    playground_db_timeout_s: float = Field(10.0, gt=0)

    # False: commits stop waiting for the WAL flush (synchronous_commit=off). Runs are preview
    # data, so a deploy may trade the last fraction of a second of runs on a crash for ~0.7 ms.
    playground_durable_writes: bool = True

    # Pool.
    playground_db_pool_min: int = Field(1, ge=0, le=100)
    playground_db_pool_max: int = Field(10, ge=1, le=100)

    # Injection proxy caps on the fields that drive cost (over a cap: 422). A request without
    # max_tokens/max_completion_tokens is forwarded with the default.
    playground_injection_default_max_tokens: int = Field(512, ge=1, le=32_768)
    playground_injection_max_tokens: int = Field(2048, ge=1, le=32_768)
    playground_injection_max_n: int = Field(1, ge=1, le=8)
    playground_injection_max_messages: int = Field(64, ge=1, le=256)
    playground_injection_max_message_chars: int = Field(32_000, ge=1, le=1_000_000)
    playground_injection_allow_ignore_eos: bool = False

    # Per-client limits (429 rate_limited + Retry-After) and the deployment's GPU ceiling (503
    # overloaded), shared by every backend process through Postgres. "gpu" routes: run,
    # features/extract|analyze, chat/completions; "read": every other route but /health.
    playground_rate_window_s: float = Field(60.0, ge=1, le=3600)
    playground_rate_gpu_per_window: int = Field(20, ge=1, le=1_000_000)
    playground_rate_read_per_window: int = Field(1200, ge=1, le=10_000_000)
    playground_gpu_in_flight_per_client: int = Field(2, ge=1, le=10_000)
    playground_gpu_in_flight_global: int = Field(16, ge=1, le=100_000)
    playground_read_in_flight_per_client: int = Field(16, ge=1, le=100_000)
    # Concurrency slots are leases: renewed every third of this while held, expired after it
    # when their process is gone.
    playground_lease_ttl_s: float = Field(30.0, ge=1, le=3600)
    # Unset: the client is the peer address. Set (behind a trusted proxy, e.g.
    # x-forwarded-for): the header's last address, the one the proxy appended.
    playground_client_ip_header: str | None = None

    # Request bodies over this many bytes answer 413 before parsing.
    playground_max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)

    # Input bounds (the request models carry hard caps; these may only tighten them).
    playground_max_prompt_chars: int = Field(16_000, ge=1, le=100_000)
    playground_max_tokens: int = Field(2048, ge=1, le=8192)
    # Worst-case positions x sae_top_k and stored timeline bytes of one run, checked before any
    # GPU work from the prompt's bytes and max_tokens (backend/activations/budget.py).
    playground_max_timeline_features: int = Field(1_000_000, ge=1, le=100_000_000)
    playground_max_timeline_bytes: int = Field(64 << 20, ge=1024, le=1 << 30)

    # The feature fold (backend/features/fold.py): run in the background of this process
    # (several processes may; one folds at a time), this many queued runs per transaction,
    # and a look at the queue at least this often when idle.
    playground_feature_fold: bool = True
    playground_fold_batch: int = Field(64, ge=1, le=1000)
    playground_fold_idle_s: float = Field(2.0, gt=0, le=3600)

    # Prometheus metrics on GET /metrics (docs/operations.md); off: not measured, no route.
    playground_metrics: bool = True
    # Set: /metrics needs `Authorization: Bearer <token>` (401 otherwise). Unset: open (local).
    playground_metrics_token: SecretStr | None = None

    @field_validator(
        "playground_activations_hf_url",
        "playground_sae_url",
        "playground_llama_8b_url",
        "playground_qwen_14b_url",
    )
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def upstream_headers(self) -> dict[str, str]:
        """Headers for every call to the engine and the SAE service: the service token, and
        Modal's proxy-auth pair when configured. Built per client, never logged."""
        headers = {}
        if self.playground_service_token is not None:
            headers["authorization"] = f"Bearer {self.playground_service_token.get_secret_value()}"
        if self.playground_modal_proxy_key and self.playground_modal_proxy_secret:
            headers["modal-key"] = self.playground_modal_proxy_key.get_secret_value()
            headers["modal-secret"] = self.playground_modal_proxy_secret.get_secret_value()
        return headers

    @field_validator("playground_db_pool_max")
    @classmethod
    def _pool_bounds(cls, value: int, info) -> int:
        if value < info.data.get("playground_db_pool_min", 1):
            raise ValueError("playground_db_pool_max must be >= playground_db_pool_min")
        return value

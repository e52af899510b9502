"""The backend's one settings object, read from the environment (names as in the spec)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.auth import checked_token
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
    # The origin of every link (permalink, og:url). Required where PLAYGROUND_DEPLOYED is set:
    # there the Host header is never used for links.
    public_base_url: str | None = None
    # Set by modal_deploy.py: the backend fails closed (PUBLIC_BASE_URL and the service token
    # required; an empty token is an error everywhere).
    playground_deployed: bool = False

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
    # Slots kept free for clients holding none (migration 0023, the admission): a client that
    # holds a slot takes another only while at least this many stay free (half the default
    # ceiling: a second slot only while the deployment is less than half busy).
    playground_gpu_reserve_new: int = Field(8, ge=0, le=100_000)
    # Client identity (backend/limits/identity.py). Unset: the peer address, which on Modal's
    # asgi_app is the client's own. Set (only behind a trusted proxy that sets the header): its
    # first (Modal's web_server) or last (a proxy that appends) address.
    playground_client_ip_header: str | None = None
    playground_client_ip_pick: Literal["first", "last"] = "last"
    # IPv6 clients are keyed by this network prefix (one subscriber usually has a /64).
    playground_ipv6_prefix: int = Field(64, ge=16, le=128)
    # uvicorn's proxy-header trust (rewriting the peer from X-Forwarded-For) is off unless this
    # lists the proxies to trust ("127.0.0.1", "*"); `playground backend` reads it.
    playground_forwarded_allow_ips: str | None = None
    # A client that takes no response chunk for this long is dropped (its connection closed);
    # a streamed run behind it finishes and is stored. Each stream buffers at most this many
    # frames for its client.
    playground_client_send_timeout_s: float = Field(20.0, gt=0, le=3600)
    playground_stream_queue_frames: int = Field(256, ge=1, le=100_000)

    # Request bodies over this many bytes answer 413 before parsing.
    playground_max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)

    # Input bounds (the request models carry hard caps; these may only tighten them).
    playground_max_prompt_chars: int = Field(16_000, ge=1, le=100_000)
    playground_max_tokens: int = Field(2048, ge=1, le=8192)
    # Worst-case positions x sae_top_k and stored timeline bytes of one run, checked before any
    # GPU work from the prompt's bytes and max_tokens, or the engine's exact token count when
    # that bound is over (backend/activations/budget.py).
    playground_max_timeline_features: int = Field(1_000_000, ge=1, le=100_000_000)
    # Bytes: the JSON timeline and its packed copy together (budget.py's upper bound; stored
    # sizes come out lower, JSONB being compressed). 8 MiB: ~4,800 positions at the default
    # sae_top_k 20, ~840 at 128 (today's maximum run, 3,035 x 128, stored 17.7 MB).
    playground_max_timeline_bytes: int = Field(8 << 20, ge=1024, le=1 << 30)
    # Stored bytes per client (its limits key) per UTC day; over it, new runs answer 429
    # quota_exceeded until midnight UTC (backend/limits/quota.py). Reads are not counted.
    playground_client_daily_bytes: int = Field(256 << 20, ge=1024, le=1 << 40)
    # New runs answer 507 storage_full while the database is over this many bytes (asked at
    # most every PLAYGROUND_DATABASE_SIZE_CHECK_S); reads keep working. Prune frees it.
    playground_max_database_bytes: int = Field(16 << 30, ge=1 << 20, le=1 << 50)
    playground_database_size_check_s: float = Field(30.0, ge=0, le=3600)
    # Steering (docs/steering.md): features per run, and |strength| (x the decoder row).
    playground_max_steer_features: int = Field(8, ge=1, le=8)
    playground_max_steer_strength: float = Field(300.0, gt=0, le=1000)

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

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        checked_token(
            self.playground_service_token,
            env_name="PLAYGROUND_SERVICE_TOKEN",
            deployed=self.playground_deployed,
        )
        if self.playground_deployed and not (self.public_base_url or "").strip():
            raise ValueError("PUBLIC_BASE_URL is required where PLAYGROUND_DEPLOYED is set")
        return self

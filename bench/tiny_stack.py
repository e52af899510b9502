"""The whole stack on the tiny model for the benchmarks that drive it end to end (bench.load,
bench.stream): the tiny Llama-3.1 and the demo SAE built under ``root``, a throwaway embedded
Postgres (migrated), the engine and SAE service (service token on, SAE on one torch thread),
then the backend over them, as `playground up --tiny` starts it. Everything stops on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.pgembed import embedded_postgres
from common.services import Service, free_port


@dataclass(frozen=True)
class TinyStack:
    database_url: str
    engine: Service
    sae: Service
    backend: Service


@contextmanager
def tiny_stack(root: Path, token: str, backend_env: dict[str, str]) -> Iterator[TinyStack]:
    """``backend_env`` adds to (or overrides) the backend's settings: limits, headers."""
    from backend.db.migrate import upgrade
    from engine.sae.demo import build_demo_sae
    from engine.tiny.build import build_tiny_model

    logs = root / "logs"
    model = build_tiny_model(root / "tiny")
    sae_dir = build_demo_sae(model, root / "sae")
    with embedded_postgres(root / "pg", delete_on_exit=True) as db_url:
        upgrade(db_url)
        engine = Service(
            "engine",
            ["engine", "--model", str(model)],
            free_port(),
            logs / "engine.log",
            {"ENGINE_API_TOKEN": token},
        )
        sae = Service(
            "sae",
            ["sae", "--model", str(model), "--sae-dir", str(sae_dir)],
            free_port(),
            logs / "sae.log",
            {"SAE_SERVICE_API_TOKEN": token, "SAE_SERVICE_TORCH_THREADS": "1"},
        )
        services = [engine, sae]
        try:
            for svc in services:
                svc.start()
            for svc in services:
                svc.wait_healthy(600)
            backend = Service(
                "backend",
                ["backend", "--no-migrate"],
                free_port(),
                logs / "backend.log",
                {
                    "DATABASE_URL": db_url,
                    "PLAYGROUND_ACTIVATIONS_HF_URL": engine.url,
                    "PLAYGROUND_SAE_URL": sae.url,
                    "PLAYGROUND_SERVICE_TOKEN": token,
                    "PLAYGROUND_DEFAULT_MODEL_ID": str(model),
                    "PLAYGROUND_DEFAULT_SAE_ID": "demo_random",
                    **backend_env,
                },
            )
            services.append(backend)
            backend.start()
            backend.wait_healthy(120)
            yield TinyStack(db_url, engine, sae, backend)
        finally:
            for svc in reversed(services):
                svc.stop(20)

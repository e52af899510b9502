"""Cross-service health: Postgres, the engine and the SAE service, probed together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import asyncpg

from backend.db import run_reads
from backend.db.pool import connection
from backend.settings import Settings
from backend.upstreams.engine import EngineClient
from backend.upstreams.sae import SaeClient
from common.errors import ApiError
from common.timing import elapsed_ms


class CheckView(TypedDict):
    ok: bool
    latency_ms: float | None
    error: str | None
    age_s: NotRequired[float | None]


class HealthErrorView(TypedDict):
    code: str
    message: str
    upstream: str


class HealthView(TypedDict):
    status: Literal["ok", "degraded", "down"]
    postgres: CheckView
    engine: CheckView
    sae: CheckView
    error: HealthErrorView | None


@dataclass(frozen=True, slots=True)
class HealthReport:
    status_code: int
    body: HealthView


class HealthService:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, engine: EngineClient, sae: SaeClient
    ) -> None:
        self.pool = pool
        self.engine = engine
        self.sae = sae
        self._timeout = settings.playground_health_timeout_s
        self._interval = settings.playground_health_interval_s
        # Upstream name -> (last result, monotonic time it was taken); one probe at a time each.
        self._cache: dict[str, tuple[CheckView, float]] = {}
        self._locks = {"engine": asyncio.Lock(), "sae": asyncio.Lock()}

    async def check(self) -> HealthReport:
        """200 ``ok``/``degraded`` (an upstream down), 503 ``down`` when Postgres is. Postgres
        is asked every time; the GPU services at most once per interval (see settings)."""
        pg, engine, sae = await asyncio.gather(
            self._probe(self._ping()),
            self._cached("engine", self.engine.upstream.health),
            self._cached("sae", self.sae.upstream.health),
        )
        if not pg["ok"]:
            error: HealthErrorView = {
                "code": "service_unavailable",
                "message": f"postgres unavailable: {pg['error']}",
                "upstream": "postgres",
            }
            return HealthReport(
                503,
                {"status": "down", "postgres": pg, "engine": engine, "sae": sae, "error": error},
            )
        status: Literal["ok", "degraded"] = "ok" if engine["ok"] and sae["ok"] else "degraded"
        return HealthReport(
            200, {"status": status, "postgres": pg, "engine": engine, "sae": sae, "error": None}
        )

    async def _cached(self, name: str, probe: Callable[[], Awaitable[None]]) -> CheckView:
        async with self._locks[name]:  # concurrent callers share one probe
            hit = self._cache.get(name)
            now = time.monotonic()
            if hit is None or now - hit[1] >= self._interval:
                hit = (await self._probe(probe()), time.monotonic())
                self._cache[name] = hit
        view, taken = hit
        return {**view, "age_s": round(time.monotonic() - taken, 3)}

    async def _ping(self) -> None:
        async with connection(self.pool, self._timeout) as conn:
            await asyncio.wait_for(run_reads.ping(conn), self._timeout)

    async def _probe(self, probe: Awaitable[None]) -> CheckView:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(probe, self._timeout)
        except ApiError as exc:
            return {"ok": False, "latency_ms": elapsed_ms(start), "error": exc.message}
        except (TimeoutError, OSError) as exc:
            return {"ok": False, "latency_ms": elapsed_ms(start), "error": type(exc).__name__}
        return {"ok": True, "latency_ms": elapsed_ms(start), "error": None}

"""The limiter: which class a route is in, whose request it is, and whether it may run.

Classes: ``gpu`` (run, features/extract|analyze, chat/completions: each call may drive a GPU)
and ``read`` (everything else). Per client and class: a request rate per fixed window and a
number of requests in flight; for ``gpu`` also a ceiling on work in flight for the whole
deployment. Counters and slots live in Postgres (backend/db/limits.py), so they hold across
processes; slots are leases this process renews while it holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from backend.db import limits as sql
from backend.db.pool import connection
from backend.settings import Settings
from common.errors import Overloaded, RateLimited, ServiceUnavailable

logger = logging.getLogger(__name__)

GPU_ROUTES = frozenset(
    {
        ("POST", "/playground/activations/run"),
        ("POST", "/playground/features/extract"),
        ("POST", "/playground/features/analyze"),
        ("POST", "/playground/chat/completions"),
    }
)
# Liveness probes (`up`, the platform) and the metrics scrape (its own token) are not limited.
EXEMPT_PATHS = frozenset({"/health", "/metrics"})


def route_class(method: str, path: str) -> str | None:
    if path in EXEMPT_PATHS:
        return None
    return "gpu" if (method, path.rstrip("/") or "/") in GPU_ROUTES else "read"


@dataclass(frozen=True, slots=True)
class ClassLimits:
    per_window: int
    per_client_in_flight: int
    global_in_flight: int | None


class Limiter:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.window = timedelta(seconds=settings.playground_rate_window_s)
        self.ttl = timedelta(seconds=settings.playground_lease_ttl_s)
        self.client_header = (settings.playground_client_ip_header or "").lower().encode() or None
        self._timeout = settings.playground_db_timeout_s
        self.classes = {
            "gpu": ClassLimits(
                settings.playground_rate_gpu_per_window,
                settings.playground_gpu_in_flight_per_client,
                settings.playground_gpu_in_flight_global,
            ),
            "read": ClassLimits(
                settings.playground_rate_read_per_window,
                settings.playground_read_in_flight_per_client,
                None,
            ),
        }
        self._held: set[uuid.UUID] = set()
        self._heartbeat: asyncio.Task | None = None

    # -- who --------------------------------------------------------------------------------

    def client_key(self, scope) -> str:
        """The peer address, or the configured trusted proxy header's last (rightmost) address:
        the one the proxy itself appended, which a client cannot forge."""
        if self.client_header is not None:
            for name, value in scope.get("headers", ()):
                if name == self.client_header:
                    last = value.decode("latin-1").split(",")[-1].strip()
                    if last:
                        return last[:100]
        client = scope.get("client")
        return client[0] if client else "unknown"

    # -- admission -----------------------------------------------------------------------------

    @asynccontextmanager
    async def admit(self, client_key: str, klass: str) -> AsyncIterator[None]:
        """Count the request and hold a slot while the body of the ``async with`` runs; raise
        RateLimited (429) or Overloaded (503) instead when over a limit."""
        limits = self.classes[klass]
        try:
            async with connection(self.pool, self._timeout) as conn:
                hits, remaining_s = await sql.hit_window(conn, client_key, klass, self.window)
                if hits > limits.per_window:
                    raise RateLimited(
                        f"over {limits.per_window} {klass} requests per "
                        f"{self.window.total_seconds():.0f} s for this client",
                        retry_after_s=remaining_s,
                    )
                lease, refused = await sql.acquire_lease(
                    conn,
                    client_key=client_key,
                    route_class=klass,
                    client_limit=limits.per_client_in_flight,
                    global_limit=limits.global_in_flight,
                    ttl=self.ttl,
                )
        except ServiceUnavailable:
            if klass == "gpu":
                raise  # no GPU work without the limits that bound it
            logger.warning("limits unavailable (postgres); letting a read through")
            yield
            return
        if refused == "client":
            raise RateLimited(
                f"this client already has {limits.per_client_in_flight} {klass} requests in flight",
                retry_after_s=1,
            )
        if refused == "global":
            raise Overloaded(
                f"the deployment is at its ceiling of {limits.global_in_flight} {klass} "
                "requests in flight",
                retry_after_s=2,
            )
        assert lease is not None
        self._held.add(lease)
        try:
            yield
        finally:
            self._held.discard(lease)
            await self._release(lease)

    async def _release(self, lease: uuid.UUID) -> None:
        try:
            async with connection(self.pool, self._timeout) as conn:
                await sql.release_lease(conn, lease)
        except ServiceUnavailable as exc:
            logger.warning("lease %s not released (%s); it expires by itself", lease, exc.message)

    # -- lease renewal -------------------------------------------------------------------------

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._renew_forever(), name="lease-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _renew_forever(self) -> None:
        every = self.ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            held = list(self._held)
            try:
                async with connection(self.pool, self._timeout) as conn:
                    if held:
                        await sql.renew_leases(conn, held, self.ttl)
                    await sql.prune_windows(conn, self.window * 2)
            except ServiceUnavailable as exc:
                logger.warning("lease renewal failed: %s", exc.message)

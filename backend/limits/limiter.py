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
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from backend.db import limits as sql
from backend.db.pool import connection
from backend.limits.fair_share import FairShare
from backend.limits.identity import ClientIdentity
from backend.limits.slot import Slot
from backend.settings import Settings
from common.defaults import PAGE_PATH
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
# Limited, but let through when Postgres cannot count them: the health route must answer
# "postgres down" itself (it asks the upstreams at most once per interval, from its cache), and
# the page and its static files are served without the database (the page says what is down).
FAIL_OPEN_PATHS = frozenset({"/playground/activations/health", PAGE_PATH})
FAIL_OPEN_PREFIXES = ("/playground/assets/",)


def fails_open(path: str) -> bool:
    return path in FAIL_OPEN_PATHS or path.startswith(FAIL_OPEN_PREFIXES)


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
        self.identity = ClientIdentity(
            header=(settings.playground_client_ip_header or "").lower().encode() or None,
            pick=settings.playground_client_ip_pick,
            ipv6_prefix=settings.playground_ipv6_prefix,
        )
        # A response send that waits longer than this (the client stopped reading) drops it.
        self.send_timeout_s = settings.playground_client_send_timeout_s
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
        self.shares = {
            name: FairShare(
                limits.per_client_in_flight,
                limits.global_in_flight,
                settings.playground_gpu_reserve_new if name == "gpu" else 0,
            )
            for name, limits in self.classes.items()
        }
        self._held: set[uuid.UUID] = set()
        self._heartbeat: asyncio.Task | None = None

    # -- who --------------------------------------------------------------------------------

    def client_key(self, scope) -> str:
        """The client's key (backend/limits/identity.py: the peer, or a trusted proxy's
        header; IPv6 by its /64)."""
        return self.identity.key(scope)

    # -- admission -----------------------------------------------------------------------------

    async def admit(self, client_key: str, klass: str, *, fail_open: bool = False) -> Slot | None:
        """Count the request and take a slot; raise RateLimited (429) or Overloaded (503)
        instead when over a limit, ServiceUnavailable (503) when Postgres cannot say (unless
        ``fail_open``: then None, no slot). The caller releases the slot (``Slot.release``,
        idempotent) when the work is over."""
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
                    decide=self.shares[klass].decide,
                    ttl=self.ttl,
                )
        except ServiceUnavailable:
            if not fail_open:
                raise  # no limits, no work: unlimited reads are a flood's open door
            logger.warning("limits unavailable (postgres); letting a health check through")
            return None
        if refused == "client":
            raise RateLimited(
                f"this client already has {limits.per_client_in_flight} {klass} requests in flight",
                retry_after_s=1,
            )
        if refused == "share":
            raise RateLimited(
                f"this client holds its fair share of the deployment's {klass} slots while "
                "others are waiting",
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

        async def release() -> None:
            self._held.discard(lease)
            await self._release(lease)

        return Slot(release, client_key)

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

"""The limiter: which class a route is in, whose request it is, and whether it may run.

Classes: ``gpu`` (run, features/extract|analyze, chat/completions: each call may drive a GPU)
and ``read`` (everything else). Per client and class: a request rate per fixed window and a
number of requests in flight; for ``gpu`` also a ceiling on work in flight for the whole
deployment, shared fairly (the rules: migrations/versions/0023_admission_function.py). Counters
and slots live in Postgres (backend/db/limits.py), so they hold across processes; slots are
leases this process renews while it holds them. One request's admission is one round trip.
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
from backend.limits.identity import ClientIdentity
from backend.limits.quota import quota_exceeded
from backend.limits.slot import Slot
from backend.settings import Settings
from common.defaults import PAGE_PATH
from common.errors import ApiError, Overloaded, RateLimited, ServiceUnavailable

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
    # Slots kept for clients holding none, taken by no client that holds one already.
    reserve_new: int = 0


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
                settings.playground_gpu_reserve_new,
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
        """The client's key (backend/limits/identity.py: the peer, or a trusted proxy's
        header; IPv6 by its /64)."""
        return self.identity.key(scope)

    # -- admission -----------------------------------------------------------------------------

    async def admit(
        self,
        client_key: str,
        klass: str,
        *,
        fail_open: bool = False,
        daily_quota: int | None = None,
    ) -> Slot | None:
        """Count the request and take a slot (one round trip); raise RateLimited (429) or
        Overloaded (503) instead when over a limit, 429 ``quota_exceeded`` when a storing
        route's client stored ``daily_quota`` bytes today, ServiceUnavailable (503) when
        Postgres cannot say (unless ``fail_open``: then None, no slot). The caller releases the
        slot (``Slot.release``, idempotent) when the work is over."""
        limits = self.classes[klass]
        ask = sql.AdmissionAsk(
            client_key=client_key,
            route_class=klass,
            window=self.window,
            per_window=limits.per_window,
            lease_id=uuid.uuid4(),
            ttl=self.ttl,
            per_client=limits.per_client_in_flight,
            ceiling=limits.global_in_flight,
            reserve=limits.reserve_new,
            quota_bytes=daily_quota,
        )
        try:
            async with connection(self.pool, self._timeout) as conn:
                admission = await sql.admit(conn, ask)
        except ServiceUnavailable:
            if not fail_open:
                raise  # no limits, no work: unlimited reads are a flood's open door
            logger.warning("limits unavailable (postgres); letting a health check through")
            return None
        if admission.refused is not None:
            raise self._refusal(admission, limits, klass, daily_quota)
        self._held.add(ask.lease_id)

        async def release() -> None:
            self._held.discard(ask.lease_id)
            await self._release(ask.lease_id)

        return Slot(release, client_key)

    def _refusal(
        self, admission: sql.Admission, limits: ClassLimits, klass: str, quota: int | None
    ) -> ApiError:
        refused = admission.refused
        if refused == "quota":
            assert quota is not None and admission.used_bytes is not None
            return quota_exceeded(admission.used_bytes, quota, admission.retry_s or 1)
        if refused == "window":
            return RateLimited(
                f"over {limits.per_window} {klass} requests per "
                f"{self.window.total_seconds():.0f} s for this client",
                retry_after_s=admission.retry_s or 1,
            )
        if refused == "client":
            return RateLimited(
                f"this client already has {limits.per_client_in_flight} {klass} requests in flight",
                retry_after_s=1,
            )
        if refused == "share":
            return RateLimited(
                f"this client holds its fair share of the deployment's {klass} slots while "
                "others are waiting",
                retry_after_s=1,
            )
        assert refused == "global", refused
        return Overloaded(
            f"the deployment is at its ceiling of {limits.global_in_flight} {klass} "
            "requests in flight",
            retry_after_s=2,
        )

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

"""The SAE service's metrics (docs/operations.md): encode latency, positions per batch, the
batcher's queue and its refusals, the stream caches, and the SAE work done. Counters the
batcher and the caches keep anyway are read at scrape time, not counted twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.sae.batching import Batcher

ENCODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
POSITION_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)


class _BatcherState(Collector):
    """Queue depth, batches, positions computed and the stream caches, from the batcher."""

    def __init__(self) -> None:
        self.batcher: Batcher | None = None

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        b = self.batcher
        stats = b.caches.stats if b is not None else None

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        def gauge(name: str, doc: str, value: int) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        yield gauge(
            "playground_sae_queue_depth",
            "Encode jobs waiting for a batch.",
            b.queued() if b is not None else 0,
        )
        yield counter(
            "playground_sae_batches", "Batches computed.", b.batches_run if b is not None else 0
        )
        yield counter(
            "playground_sae_work_positions",
            "SAE work: positions run through the truncated forward (a stream chunk counts only "
            "its new positions).",
            b.work_positions if b is not None else 0,
        )
        yield counter(
            "playground_sae_jobs_dropped",
            "Jobs whose caller left before their batch computed.",
            b.jobs_dropped if b is not None else 0,
        )
        yield counter(
            "playground_sae_stream_cache_hits",
            "Stream chunks that continued a cached stream.",
            stats.hits if stats else 0,
        )
        yield counter(
            "playground_sae_stream_cache_misses",
            "Stream chunks that found no usable cache (computed from the start).",
            stats.misses if stats else 0,
        )
        yield counter(
            "playground_sae_stream_cache_evictions",
            "Stream caches evicted (count, byte bound or idleness).",
            stats.evicted if stats else 0,
        )
        yield gauge(
            "playground_sae_stream_cache_bytes",
            "Bytes held by the stream caches.",
            b.caches.nbytes if b is not None else 0,
        )
        yield gauge(
            "playground_sae_stream_cache_streams",
            "Streams cached.",
            len(b.caches) if b is not None else 0,
        )

    def describe(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        return self.collect()


class SaeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._state = _BatcherState()
        registry.register(self._state)
        self.encode = Histogram(
            "playground_sae_encode_seconds",
            "Seconds from an encode job's submission to its result (queue + compute), by kind "
            "(extract, analyze).",
            ["kind"],
            buckets=ENCODE_BUCKETS,
            registry=registry,
        )
        self.batch_positions = Histogram(
            "playground_sae_batch_positions",
            "Positions computed per batch.",
            buckets=POSITION_BUCKETS,
            registry=registry,
        )
        self.queue_full = Counter(
            "playground_sae_queue_full",
            "Encode jobs refused because the queue was full (503 overloaded).",
            registry=registry,
        )
        for kind in ("extract", "analyze"):
            self.encode.labels(kind)

    def attach(self, batcher: Batcher) -> None:
        self._state.batcher = batcher
        batcher.on_batch = self.batch_positions.observe

    def encoded(self, kind: str, seconds: float) -> None:
        self.encode.labels(kind).observe(seconds)

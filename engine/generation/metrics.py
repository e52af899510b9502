"""The engine's metrics beyond vLLM's own (``vllm:*``, forwarded from prometheus_client's default
registry, where vLLM's Prometheus stat logger keeps them): aborted requests, steered requests,
and whether the sort-free sampler plugin is in place. docs/operations.md lists them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from common.metrics import DefaultRegistry, new_registry


class _Aborts(Collector):
    """The service's own abort count, read at scrape time (no second counter to keep)."""

    def __init__(self) -> None:
        self.read: Callable[[], int] = lambda: 0

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "playground_engine_aborted_requests",
            "Generation requests cancelled before they finished (client gone, batch failed).",
        )
        family.add_metric([], self.read())
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return self.collect()


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._aborts = _Aborts()
        registry.register(self._aborts)
        # TODO(issue 21): steering calls count_steered() once per request with `steer`.
        self.steered = Counter(
            "playground_engine_steered_requests",
            "Generation requests that carried a steering vector.",
            registry=registry,
        )
        self.sampler = Info(
            "playground_engine_sampler_plugin",
            "The sort-free top-k/top-p sampler plugin (engine/generation/sampling_patch.py): "
            "enabled=true when it replaced vLLM's CPU sampler in this process.",
            registry=registry,
        )

    @classmethod
    def create(cls) -> EngineMetrics:
        """A registry of the app's own, with vLLM's default-registry metrics forwarded in."""
        registry = new_registry(process=False)  # the default registry has them
        registry.register(DefaultRegistry())
        return cls(registry)

    def attach(self, aborted: Callable[[], int], sampler_plugin: str, enabled: bool) -> None:
        """Once the engine is up (lifespan): where the abort count lives, what the sampler is."""
        self._aborts.read = aborted
        self.sampler.info({"plugin": sampler_plugin, "enabled": "true" if enabled else "false"})

    def count_steered(self) -> None:
        self.steered.inc()

"""The engine's metrics beyond vLLM's own (``vllm:*``, forwarded from prometheus_client's default
registry, where vLLM's Prometheus stat logger keeps them): aborted requests, steered requests,
and whether the sort-free sampler plugin is in place. docs/operations.md lists them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from common.metrics import DefaultRegistry, new_registry


class _ServiceCount(Collector):
    """A count the generation service keeps itself, read at scrape time (no second counter to
    keep in step)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.read: Callable[[], int] = lambda: 0

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation)
        family.add_metric([], self.read())
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return self.collect()


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._aborts = _ServiceCount(
            "playground_engine_aborted_requests",
            "Generation requests cancelled before they finished (client gone, batch failed).",
        )
        self._steered = _ServiceCount(
            "playground_engine_steered_requests",
            "Generation requests that carried a steering vector.",
        )
        registry.register(self._aborts)
        registry.register(self._steered)
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

    def attach(
        self,
        aborted: Callable[[], int],
        steered: Callable[[], int],
        sampler_plugin: str,
        enabled: bool,
    ) -> None:
        """Once the engine is up (lifespan): where the abort and steered counts live, what the
        sampler is."""
        self._aborts.read = aborted
        self._steered.read = steered
        self.sampler.info({"plugin": sampler_plugin, "enabled": "true" if enabled else "false"})

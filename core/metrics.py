"""Prometheus metrics: each service builds its own registry in ``main()`` (STYLE 9)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS_S",
    "CollectorRegistry",
    "Counter",
    "Gauge",
    "Histogram",
    "new_registry",
    "render",
]

# Fine at the low end: chat latency objectives are in milliseconds.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
)


def new_registry() -> CollectorRegistry:
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class MetricFactory:
    """Declares a service's metrics on its own registry (STYLE 9) without naming it each
    time: ``m.counter(name, help, labels)``, ``m.gauge(...)``, ``m.histogram(...)``.
    Histograms measure latencies unless told otherwise (``LATENCY_BUCKETS_S``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)


def observe_gc_pauses(histogram: Histogram) -> Callable[[], None]:
    """Time every garbage collection of this process into ``histogram``, labelled by
    generation (a full collection walks every live object: with 10,000 sockets it is
    a stall); returns the function that stops it."""
    started = 0.0
    by_generation = [histogram.labels(str(generation)) for generation in range(3)]

    def on_collect(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started)

    gc.callbacks.append(on_collect)
    return lambda: gc.callbacks.remove(on_collect)

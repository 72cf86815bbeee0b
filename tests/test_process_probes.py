"""Small process-level pieces the daemons and the load generator rely on: the
garbage-collection pause histogram and the client's resolver for IP literals."""

from __future__ import annotations

import gc
import socket

from core.metrics import MetricFactory, new_registry, observe_gc_pauses
from proto.client import LiteralResolver


def test_every_collection_is_observed_by_generation_until_stopped() -> None:
    registry = new_registry()
    pauses = MetricFactory(registry).histogram("t_gc_pause_seconds", "t", ["generation"])

    def full_passes() -> tuple[float, float]:
        labels = {"generation": "2"}
        count = registry.get_sample_value("t_gc_pause_seconds_count", labels) or 0.0
        total = registry.get_sample_value("t_gc_pause_seconds_sum", labels) or 0.0
        return count, total

    stop = observe_gc_pauses(pauses)
    try:
        gc.collect()
        gc.collect()
        count, total = full_passes()
        assert count >= 2 and total > 0.0
        gc.collect(0)
        assert (
            registry.get_sample_value("t_gc_pause_seconds_count", {"generation": "0"}) or 0
        ) >= 1
    finally:
        stop()
    gc.collect()
    assert full_passes()[0] == count


async def test_ip_literals_resolve_to_themselves_and_names_still_resolve() -> None:
    resolver = LiteralResolver()
    assert await resolver.resolve("127.0.0.1", 8081) == [(socket.AF_INET, ("127.0.0.1", 8081))]
    assert await resolver.resolve("[::1]", 8081) == [(socket.AF_INET6, ("::1", 8081, 0, 0))]
    named = await resolver.resolve("localhost", 8081)
    assert named and all(address[1] == 8081 for _, address in named)
    assert {address[0] for _, address in named} & {"127.0.0.1", "::1"}

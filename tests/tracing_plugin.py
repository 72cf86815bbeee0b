"""Run any test suite with tracing on in the test process: ``pytest -p tests.tracing_plugin``.

Services the tests start in-process (restd, chatd) are then instrumented exactly
as in production; spans go to a counting sink, and the run fails if none were
made (tracing did not engage).
Subprocesses the tests start follow the ``OTEL_*`` env as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from core.settings import Settings
from core.tracing import Tracing, setup_tracing


class CountingExporter(SpanExporter):
    """Keeps only a count: a whole suite's spans would not fit in memory."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    exporter = CountingExporter()
    tracing = setup_tracing("tests", Settings(), exporter=exporter)
    assert tracing is not None
    _state.update(exporter=exporter, tracing=tracing)


def pytest_unconfigure(config: pytest.Config) -> None:
    tracing, exporter = _state.pop("tracing", None), _state.pop("exporter", None)
    if isinstance(tracing, Tracing) and isinstance(exporter, CountingExporter):
        tracing.shutdown()
        print(f"\ntracing_plugin: {exporter.count} spans exported")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    exporter = _state.get("exporter")
    if isinstance(exporter, CountingExporter) and exporter.count == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\ntracing_plugin: tracing was on but no span was exported")

"""OpenTelemetry tracing for every service, off unless the standard ``OTEL_*`` env asks.

``setup_tracing`` is called once by each entry point, after logging. Tracing is
on only when the environment selects an exporter (``OTEL_TRACES_EXPORTER`` other
than ``none``, or an ``OTEL_EXPORTER_OTLP_*ENDPOINT``) and ``OTEL_SDK_DISABLED``
is not ``true``; otherwise nothing is imported or patched, so chatd's hot path
pays nothing. When on, the official instrumentations cover Tornado (server
spans and context extraction), PyMongo command monitoring, redis-py (asyncio
too), Celery (the publish injects the context into the task's headers, the
worker continues it) and httpx (the payment provider calls, with the context
injected into outgoing requests). Sampler, resource attributes, batch sizes and
the OTLP endpoint are all read by the SDK from the usual variables.

The tracer provider and the instrumentations are process-wide by OpenTelemetry's
design (they patch library classes); ``Tracing.shutdown`` undoes them, which is
what lets a test turn tracing on and off within one process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from core.settings import Settings

log = logging.getLogger(__name__)

# Exporter names as OTEL_TRACES_EXPORTER spells them -> the SDK's entry-point
# names. Only OTLP over HTTP/protobuf is installed (the gRPC exporter would pull
# in grpcio), so plain "otlp" means that one.
_EXPORTER_ALIASES = {"otlp": "otlp_proto_http", "otlp_http": "otlp_proto_http"}


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OTel variables ask for traces to be exported."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return any(n.strip().lower() not in ("", "none") for n in exporter.split(","))
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


@dataclass
class Tracing:
    """The installed provider and instrumentations, for a clean shutdown."""

    provider: TracerProvider
    instrumentors: list[Any] = field(default_factory=list)

    def uninstrument(self) -> None:
        """Remove the library patches; the provider keeps working for spans in flight."""
        for instrumentor in self.instrumentors:
            instrumentor.uninstrument()
        self.instrumentors.clear()

    def shutdown(self) -> None:
        self.uninstrument()
        self.provider.shutdown()  # flushes what the batch processor still holds


def _env_exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    from opentelemetry.util._importlib_metadata import entry_points

    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[SpanExporter] = []
    for name in names:
        if name in ("", "none"):
            continue
        wanted = _EXPORTER_ALIASES.get(name, name)
        found = list(entry_points(group="opentelemetry_traces_exporter", name=wanted))
        if not found:
            raise ValueError(f"OTEL_TRACES_EXPORTER: no exporter named {name!r} is installed")
        exporters.append(found[0].load()())
    return exporters


def setup_tracing(
    service_name: str,
    settings: Settings,
    *,
    exporter: SpanExporter | None = None,
    env: Mapping[str, str] | None = None,
) -> Tracing | None:
    """Install tracing for this process when the env asks for it; None when off.

    ``exporter`` replaces the env-selected exporters and is flushed synchronously
    (the SDK's ``InMemorySpanExporter`` in tests); the global tracer provider is
    then left alone, because OpenTelemetry allows setting it only once a process.
    """
    env = os.environ if env is None else env
    if exporter is None and not tracing_enabled(env):
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.tornado import TornadoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over these.
    resource = Resource.create(
        {
            "service.name": f"devconnect-{service_name}",
            "service.namespace": "devconnect",
            "service.instance.id": settings.node_id,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for exp in _env_exporters(env):
            provider.add_span_processor(BatchSpanProcessor(exp))
        trace.set_tracer_provider(provider)
    tracing = Tracing(provider)
    for instrumentor in (
        TornadoInstrumentor(),  # type: ignore[no-untyped-call]
        PymongoInstrumentor(),
        RedisInstrumentor(),
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor(),
    ):
        if instrumentor.is_instrumented_by_opentelemetry:
            continue  # a second call in one process: keep the first set-up
        instrumentor.instrument(tracer_provider=provider)
        tracing.instrumentors.append(instrumentor)
    log.info("tracing on", extra={"otelService": resource.attributes.get("service.name")})
    return tracing


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in W3C hex of the span current in this context, if any.

    Cheap when tracing is off: no OpenTelemetry import happens here unless some
    other module already loaded the API.
    """
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    ctx = api.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

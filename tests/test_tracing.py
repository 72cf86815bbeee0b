"""Tracing: off by default; when on, one request is one connected trace.

The spans are collected by the SDK's own ``InMemorySpanExporter`` (its exporter
for tests); everything they describe is real: HTTP over a socket, Mongo, Redis
and the Celery publish to the Redis broker.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core.logs import JsonFormatter
from core.settings import Settings
from core.tracing import setup_tracing, tracing_enabled
from tests.chat_harness import running_chatd
from tests.harness import Services, celery_worker, make_settings
from tests.payments_harness import buy, payment_settings, running_simulator
from tests.restd_harness import running_restd

# One exporter for every test here: instrumentors are process-wide singletons and
# PyMongo's keeps the tracer (so the provider) of its first set-up for good, so
# the providers are never shut down and all of them export into this one sink.
SPANS = InMemorySpanExporter()


@contextmanager
def tracing_on(settings: Settings) -> Iterator[InMemorySpanExporter]:
    tracing = setup_tracing("restd", settings, exporter=SPANS)
    assert tracing is not None
    SPANS.clear()
    try:
        yield SPANS
    finally:
        tracing.uninstrument()


class Lines(logging.Handler):
    """The JSON lines a logger writes, formatted by the services' own formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("restd"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@contextmanager
def captured(logger_name: str) -> Iterator[Lines]:
    logger, handler = logging.getLogger(logger_name), Lines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def assert_one_connected_tree(spans: list[ReadableSpan]) -> ReadableSpan:
    """All spans share one trace id, every parent is in it, and there is one root."""
    assert spans
    assert {s.context.trace_id for s in spans} == {spans[0].context.trace_id}, [
        (s.name, f"{s.context.trace_id:032x}") for s in spans
    ]
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1, [s.name for s in roots]
    orphans = [s.name for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert orphans == []
    return roots[0]


def test_tracing_is_off_unless_the_otel_env_selects_an_exporter(services: Services) -> None:
    assert not tracing_enabled({})
    assert not tracing_enabled({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_enabled({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert tracing_enabled({"OTEL_TRACES_EXPORTER": "console"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert setup_tracing("restd", make_settings(services), env={}) is None


async def test_with_tracing_off_log_lines_carry_no_trace_id(services: Services) -> None:
    assert setup_tracing("restd", make_settings(services), env={}) is None
    async with running_restd(make_settings(services)) as api:
        with captured("domain.accounts") as logs:
            await api.signup()
    assert [line["msg"] for line in logs.lines] == ["signup"]
    assert "traceId" not in logs.lines[0] and "spanId" not in logs.lines[0]


async def test_one_request_is_one_connected_trace_through_mongo_redis_and_celery(
    services: Services,
) -> None:
    settings = make_settings(services)
    with tracing_on(settings) as exporter:
        async with running_restd(settings) as api:
            alice, bob = await api.signup("Alice"), await api.signup("Bob")
            exporter.clear()
            sent = await alice.http.post(
                "/api/connection-requests", json={"toUserId": bob.id, "message": "hi"}
            )
            assert sent.status_code == 201, sent.text
            spans = list(exporter.get_finished_spans())

    root = assert_one_connected_tree(spans)
    # The test's own httpx call is the root: its context went out in `traceparent`
    # and the server continued it.
    assert root.kind == SpanKind.CLIENT
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 1 and servers[0].parent is not None
    assert servers[0].parent.span_id == root.context.span_id
    systems = {str((s.attributes or {}).get("db.system")) for s in spans}
    assert {"mongodb", "redis"} <= systems, [s.name for s in spans]
    # The email to the recipient, and the feed recompute for both users.
    publishes = sorted(s.name for s in spans if s.kind == SpanKind.PRODUCER)
    assert publishes == [
        "apply_async/workers.email.connection_request",
        "apply_async/workers.recs.recompute_user",
        "apply_async/workers.recs.recompute_user",
    ], [s.name for s in spans]


async def test_a_log_line_written_inside_a_request_carries_its_trace_id(
    services: Services,
) -> None:
    settings = make_settings(services)
    with tracing_on(settings) as exporter:
        async with running_restd(settings) as api:
            exporter.clear()
            with captured("domain.accounts") as logs:
                await api.signup()
            spans = list(exporter.get_finished_spans())
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert [line["msg"] for line in logs.lines] == ["signup"]
    assert logs.lines[0]["traceId"] == f"{server.context.trace_id:032x}"
    assert isinstance(logs.lines[0]["spanId"], str) and len(logs.lines[0]["spanId"]) == 16


class OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP trace receiver: what a collector's /v1/traces takes.

    It serves from its own thread, so it keeps answering while the test's loop
    is blocked (the worker harness stops its process synchronously).
    """

    spans: list[Span]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per export batch is noise in the test output


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[Span]]]:
    received: list[Span] = []
    handler = type("Receiver", (OtlpReceiver,), {"spans": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def otlp_env(endpoint: str) -> Iterator[None]:
    """OTel variables for the subprocesses this test starts (they copy os.environ)."""
    wanted = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export promptly, the test is waiting
    }
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def test_the_worker_continues_the_trace_of_the_request_that_queued_its_task(
    services: Services, tmp_path: Path
) -> None:
    settings = make_settings(services, log_format="json")
    log_path = tmp_path / "worker.log"
    with (
        otlp_receiver() as (endpoint, received),
        otlp_env(endpoint),
        celery_worker(settings, log_path),
        tracing_on(settings) as exporter,
    ):
        async with running_restd(settings) as api:
            alice, bob = await api.signup("Alice"), await api.signup("Bob")
            exporter.clear()
            sent = await alice.http.post(
                "/api/connection-requests", json={"toUserId": bob.id, "message": "hi"}
            )
            assert sent.status_code == 201, sent.text
            spans = list(exporter.get_finished_spans())
            publishes = {s.context.span_id: s for s in spans if s.kind == SpanKind.PRODUCER}
            assert len(publishes) == 3  # the email and both users' feed recomputes
            trace_id = spans[0].context.trace_id.to_bytes(16, "big")
            for _ in range(300):
                # The broker may hold other tests' tasks too: find this request's.
                runs = [
                    s
                    for s in received
                    if s.trace_id == trace_id and s.kind == Span.SPAN_KIND_CONSUMER
                ]
                if len(runs) == len(publishes):
                    break
                await asyncio.sleep(0.1)
    # Each task run is the child of the publish that queued it, in the request's trace.
    by_parent = {int.from_bytes(r.parent_span_id, "big"): r for r in runs}
    assert by_parent.keys() == publishes.keys()
    for span_id, publish in publishes.items():
        assert by_parent[span_id].name == publish.name.replace("apply_async/", "run/")
    run = next(r for r in runs if r.name == "run/workers.email.connection_request")
    # What the task did (Mongo reads, the mail's bookkeeping) hangs under its run span.
    children = [s for s in received if s.parent_span_id == run.span_id]
    assert children, [s.name for s in received]
    assert all(s.trace_id == run.trace_id for s in children)
    # The task's own log line carries the request's trace id.
    lines = [orjson.loads(x) for x in log_path.read_bytes().splitlines() if x.startswith(b"{")]
    sent_lines = [x for x in lines if str(x.get("msg", "")).startswith("connections email sent")]
    assert f"{spans[0].context.trace_id:032x}" in [x.get("traceId") for x in sent_lines]


async def test_chatd_with_tracing_on_still_carries_messages(settings: Settings) -> None:
    with tracing_on(settings) as exporter:
        async with running_chatd(settings) as chat:
            alice, bob = await chat.pair()
            a, b = await chat.client(alice), await chat.client(bob)
            temp = await a.private_message(bob, "traced hello")
            ack = await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
            got = await b.wait_for("incoming-message")
            assert got["messageId"] == ack["messageId"] and got["text"] == "traced hello"
            await a.close()
            await b.close()
            await asyncio.sleep(0.5)
        spans = list(exporter.get_finished_spans())
    # Each socket's handshake is a server span that lasts until the socket closes;
    # the hello's reads (Mongo history, Redis presence) are its children.
    handshakes = [s for s in spans if s.kind == SpanKind.SERVER]
    assert [s.name for s in handshakes] == ["GET /ws", "GET /ws"]
    for handshake in handshakes:
        tree = [s for s in spans if s.context.trace_id == handshake.context.trace_id]
        assert assert_one_connected_tree(tree) is handshake
        systems = {str((s.attributes or {}).get("db.system")) for s in tree}
        assert {"mongodb", "redis"} <= systems
    # Messages are not traced per frame (chatd's CPU budget): the batched insert
    # and the fan-out publish are spans of their own, outside any socket's trace.
    inserts = [
        s for s in spans if s.name.endswith(".insert") and s.start_time > handshakes[0].start_time
    ]
    assert inserts and all(s.parent is None for s in inserts)


def url_of(span: ReadableSpan) -> object:
    """An HTTP client span's URL under the old or the new semantic conventions."""
    attributes = span.attributes or {}
    return attributes.get("url.full", attributes.get("http.url", ""))


async def test_a_payment_request_traces_its_calls_to_the_provider(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log"):
        with tracing_on(settings) as exporter:
            async with running_restd(settings) as api:
                user = await api.signup()
                exporter.clear()
                order = await buy(api, user)
                spans = list(exporter.get_finished_spans())
    assert order["status"] == "PENDING"
    assert_one_connected_tree(spans)
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    provider_calls = [
        s
        for s in spans
        if s.kind == SpanKind.CLIENT and str(url_of(s)).startswith(settings.phonepe_base_url)
    ]
    # The OAuth token, then the payment itself, both inside the request.
    paths = sorted(str(url_of(s)).removeprefix(settings.phonepe_base_url) for s in provider_calls)
    assert len(paths) == 2 and "/checkout/v2/pay" in paths, paths
    ids = {s.context.span_id: s for s in spans}
    for call in provider_calls:
        parent = call.parent
        while parent is not None and parent.span_id != server.context.span_id:
            parent = ids[parent.span_id].parent
        assert parent is not None, f"{call.name} is not under the request's server span"

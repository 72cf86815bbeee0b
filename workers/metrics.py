"""The worker tier's Prometheus endpoint: task outcomes and durations, broker backlog.

Why counted in the worker's main process: with the default prefork pool a task
runs in a child process, where a counter would be invisible to an exporter in
the parent (and prometheus_client's multiprocess mode must be switched on by an
environment variable before its first import). The parent, however, learns
every task's end: the pool calls the task request's ``on_success`` (with the
runtime measured in the child) or ``on_failure`` in the parent. So the
exporter, its registry and the counters all live in the parent, and work the
same with the prefork, threads and solo pools.

Backlog is read at scrape time (``LLEN`` of each queue's Redis list, with
kombu's priority sub-queues), so it is never staler than the scrape; a broker
that does not answer sets ``worker_broker_up`` to 0 instead of failing the
scrape, which is what the "Redis down" alert watches.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from billiard.einfo import ExceptionWithTraceback  # type: ignore[import-untyped]
from celery import Celery, signals
from celery.exceptions import Ignore, Reject, Retry, Terminated
from celery.worker.request import Request
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.metrics import CollectorRegistry, Counter, Histogram, new_registry
from core.settings import Settings
from core.tasks import RECS_TRAIN_MODEL
from domain.feed.metrics import TrainingMetrics

log = logging.getLogger(__name__)

# Tasks run from milliseconds (a ping) to the hard time limit (120 s).
TASK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BROKER_TIMEOUT_S = 1.0
# kombu's Redis transport keeps priorities 3, 6 and 9 in lists named
# "<queue>\x06\x16<priority>" beside the plain one (priority_steps default).
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.tasks = Counter(
            "worker_tasks_total",
            "Finished tasks by name and outcome (success, failure, retry, rejected, revoked)",
            ["task", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "worker_task_duration_seconds",
            "Task run time, by task name",
            ["task"],
            buckets=TASK_BUCKETS_S,
            registry=registry,
        )
        self.received = Counter(
            "worker_tasks_received_total",
            "Tasks taken from the broker, by name",
            ["task"],
            registry=registry,
        )
        # The design's "email failure rate" is this over workers.email.* successes.
        self.email_failures = Counter(
            "worker_email_failures_total",
            "Emails given up on (dead-lettered after retries, or refused for good), by kind",
            ["kind"],
            registry=registry,
        )

        # The learned ranker's training runs by outcome: the task returns it, so the
        # parent counts it as it counts every task's end.
        self.training = TrainingMetrics(registry)

    def finished(self, task: str, outcome: str, seconds: float | None) -> None:
        self.tasks.labels(task, outcome).inc()
        if seconds is not None and seconds >= 0:
            self.duration.labels(task).observe(seconds)


class BrokerCollector(Collector):
    """Queue lengths and broker health, read from Redis at each scrape."""

    def __init__(self, broker_url: str, queues: Iterable[str]) -> None:
        self.queues = tuple(queues)
        self.client = redis.Redis.from_url(
            broker_url, socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("worker_broker_up", "1 when the Redis broker answered this scrape")
        backlog = GaugeMetricFamily(
            "worker_queue_length", "Messages waiting in a broker queue", labels=["queue"]
        )
        used = GaugeMetricFamily("worker_broker_memory_used_bytes", "Broker Redis used_memory")
        limit = GaugeMetricFamily(
            "worker_broker_memory_max_bytes", "Broker Redis maxmemory (0 = no limit)"
        )
        try:
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues:
                for suffix in PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
            memory: dict[str, Any] = self.client.info("memory")
        except redis.RedisError as exc:
            log.warning("broker scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        step = len(PRIORITY_SUFFIXES)
        for i, queue in enumerate(self.queues):
            backlog.add_metric([queue], sum(lengths[i * step : (i + 1) * step]))
        used.add_metric([], float(memory.get("used_memory", 0)))
        limit.add_metric([], float(memory.get("maxmemory", 0)))
        yield from (up, backlog, used, limit)

    def close(self) -> None:
        self.client.close()


def metered_request_class(metrics: WorkerMetrics) -> type[Request]:
    """A Celery Request class that counts each task's end in the worker's main process."""

    class MeteredRequest(Request):  # type: ignore[misc]
        def __init_subclass__(cls, **kwargs: Any) -> None:
            # Celery builds a per-task subclass (celery.worker.request.create_request_cls)
            # whose fast-path on_success does not call ours; wrap it as it is created.
            super().__init_subclass__(**kwargs)
            inner = cls.__dict__.get("on_success")
            if inner is not None:
                cls.on_success = _metered_success(inner, metrics)  # type: ignore[method-assign]

        def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> Any:
            return _metered_success(Request.on_success, metrics)(
                self, failed__retval__runtime, **kwargs
            )

        def on_failure(self, exc_info: Any, send_failed_event: bool = True, **kwargs: Any) -> Any:
            exc = getattr(exc_info, "exception", None)
            # Unwrap only the pool's wrapper: a Retry has an ``exc`` too (the cause),
            # and unwrapping it would count every retry as a failure.
            if isinstance(exc, ExceptionWithTraceback):
                exc = exc.exc
            started = self.time_start
            seconds = time.time() - started if started else None
            metrics.finished(self.task_name, _outcome(exc), seconds)
            # workers.email.EmailUndeliverable, recognised without importing the tasks.
            email_kind = getattr(exc, "email_kind", None)
            if isinstance(email_kind, str):
                metrics.email_failures.labels(email_kind).inc()
            return super().on_failure(exc_info, send_failed_event=send_failed_event, **kwargs)

    return MeteredRequest


def _metered_success(inner: Any, metrics: WorkerMetrics) -> Any:
    def on_success(self: Request, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        failed, retval, runtime = failed__retval__runtime
        if not failed:  # a failure goes on to on_failure, which counts it
            metrics.finished(self.task_name, "success", runtime)
            if self.task_name == RECS_TRAIN_MODEL:
                metrics.training.runs.labels(_training_outcome(retval)).inc()
        return inner(self, failed__retval__runtime, **kwargs)

    return on_success


# The prefork pool hands the parent the result's repr (celery.app.trace), not the dict.
_OUTCOME_RE = re.compile(r"""['"]outcome['"]:\s*['"](\w+)['"]""")


def _training_outcome(retval: Any) -> str:
    if isinstance(retval, dict):
        return str(retval.get("outcome", "unknown"))
    found = _OUTCOME_RE.search(str(retval))
    return found.group(1) if found else "unknown"


def _outcome(exc: BaseException | None) -> str:
    if isinstance(exc, Retry):
        return "retry"
    if isinstance(exc, Reject | Ignore):
        return "rejected"
    if isinstance(exc, Terminated):
        return "revoked"
    return "failure"


class WorkerExporter:
    """Owns the registry and the HTTP server; built by the worker's entry point."""

    def __init__(self, settings: Settings, queues: Iterable[str]) -> None:
        self.settings = settings
        self.registry = new_registry()
        self.metrics = WorkerMetrics(self.registry)
        self.broker = BrokerCollector(settings.broker_url, queues)
        self.registry.register(self.broker)
        self._server: Any = None

    def install(self, app: Celery) -> None:
        """Count this app's tasks and serve /metrics once the worker is up."""
        app.Task.Request = metered_request_class(self.metrics)
        signals.task_received.connect(self._on_received, weak=False)
        signals.worker_ready.connect(self._on_ready, weak=False)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False)

    def _on_received(self, request: Any = None, **_kw: Any) -> None:
        if request is not None:
            self.metrics.received.labels(request.task_name).inc()

    def _on_ready(self, **_kw: Any) -> None:
        self.start()

    def _on_shutdown(self, **_kw: Any) -> None:
        self.stop()

    def start(self) -> None:
        port = self.settings.worker_metrics_port
        if port <= 0 or self._server is not None:
            return
        try:
            self._server, _thread = start_http_server(
                port, addr=self.settings.worker_metrics_host, registry=self.registry
            )
        except OSError as exc:  # a busy port must not stop the worker from working
            log.error("worker metrics endpoint not started on port %d: %s", port, exc)
            return
        log.info("worker metrics on http://%s:%d/metrics", self.settings.worker_metrics_host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.broker.close()

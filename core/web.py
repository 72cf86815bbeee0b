"""Tornado pieces shared by chatd and restd: request ids, health, readiness, metrics.

The public port of each service serves ``/healthz`` and ``/readyz``; ``/metrics``
has a port of its own (``start_metrics_server``), so the metrics are not served
to every client of the API or the chat socket.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import orjson
import tornado.httpserver
import tornado.web

from core.health import Readiness
from core.logs import request_id_var
from core.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, render

log = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A scrape is a GET: the metrics server takes no request body worth the name.
METRICS_MAX_BODY_BYTES = 1024


def new_request_id() -> str:
    return secrets.token_hex(8)


class BaseHandler(tornado.web.RequestHandler):
    """Takes ``X-Request-ID`` (or makes one), returns it, and logs with it."""

    request_id: str

    def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-ID", "")
        self.request_id = incoming if _REQUEST_ID_RE.match(incoming) else new_request_id()
        request_id_var.set(self.request_id)
        self.set_header("X-Request-ID", self.request_id)

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps(body, default=str))


class HealthHandler(BaseHandler):
    """Liveness: the process answers."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """Readiness: Mongo and every Redis shard answer; 503 names the failing ones.

    Each failing dependency gets a generic status; why it failed is in the log."""

    def initialize(self, readiness: Readiness) -> None:
        self.readiness = readiness

    async def get(self) -> None:
        failing = await self.readiness.failing()
        if failing:
            self.write_json({"status": "unavailable", "failing": failing}, status=503)
        else:
            self.write_json({"status": "ready"})


class MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(render(self.registry))


def service_routes(readiness: Readiness) -> list[Any]:
    """The probes every public port answers (Kubernetes reaches them there)."""
    return [
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler, {"readiness": readiness}),
    ]


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int, setting: str
) -> tornado.httpserver.HTTPServer | None:
    """Serve ``/metrics`` alone on its own port, on the running event loop.

    Port 0 turns it off. A port that cannot be bound is logged (naming
    ``setting``) and skipped, as the worker's exporter does: a metrics endpoint
    must not stop a service from serving; Prometheus's ``up`` shows the gap.
    """
    if port <= 0:
        return None
    app = tornado.web.Application([(r"/metrics", MetricsHandler, {"registry": registry})])
    server = tornado.httpserver.HTTPServer(app, max_body_size=METRICS_MAX_BODY_BYTES)
    try:
        server.listen(port, address=host)
    except OSError as exc:
        log.error("metrics endpoint not started on %s:%d (%s): %s", host, port, setting, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server

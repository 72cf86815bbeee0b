"""Tornado pieces shared by chatd and restd: request ids, health, readiness, metrics."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson
import tornado.web

from core.health import Readiness
from core.logs import request_id_var
from core.metrics import CONTENT_TYPE_LATEST, CollectorRegistry, render

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
    """Readiness: Mongo and every Redis shard answer; 503 names the failing ones."""

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


def service_routes(readiness: Readiness, registry: CollectorRegistry) -> list[Any]:
    return [
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler, {"readiness": readiness}),
        (r"/metrics", MetricsHandler, {"registry": registry}),
    ]

"""restd's composition: build the context, the routes, and serve.

The public port serves the API, the probes (``/healthz``, ``/readyz``) and the
web app (restd/handlers/webapp.py: its shell at every other path, its assets);
``/metrics`` is on ``restd_metrics_port`` (core/web.py). The HTTP server reads
no body larger than the largest route limit, nor for longer than the body
timeout; each route narrows the limit (restd/handlers/base.py). Forwarded
address headers are read by the handlers, and only from trusted proxies, so
Tornado's ``xheaders`` stays off: with it, any client could name its own address.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.web

from core.metrics import CollectorRegistry, new_registry
from core.mongo import ensure_indexes_on_start
from core.runtime import Stores, open_stores, run_service
from core.settings import Settings
from core.web import service_routes, start_metrics_server
from domain.context import RestContext, body_cap_bytes
from domain.metrics import RestMetrics
from restd.assets import AssetBundle
from restd.handlers.base import NotFoundHandler
from restd.handlers.webapp import web_rules
from restd.routes import url_rules

log = logging.getLogger(__name__)


def make_app(
    stores: Stores, registry: CollectorRegistry | None = None, **extra: Any
) -> tornado.web.Application:
    ctx = RestContext.build(stores, RestMetrics(registry or new_registry()))
    routes: list[Any] = [
        *service_routes(stores.readiness),
        *url_rules(ctx),
        *web_rules(AssetBundle(), stores.settings),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx, "route": "unmatched"},
        **extra,
    )


def http_server(app: tornado.web.Application, settings: Settings) -> tornado.httpserver.HTTPServer:
    return tornado.httpserver.HTTPServer(
        app,
        xheaders=False,
        max_body_size=body_cap_bytes(settings),
        body_timeout=settings.http_body_timeout_s,
    )


@dataclass
class RunningRestd:
    server: tornado.httpserver.HTTPServer
    metrics_server: tornado.httpserver.HTTPServer | None

    async def stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
        if self.metrics_server is not None:
            self.metrics_server.stop()
            await self.metrics_server.close_all_connections()


def start_restd(stores: Stores) -> RunningRestd:
    """The API on ``restd_port`` and the metrics on ``restd_metrics_port``, both on ``host``."""
    settings = stores.settings
    registry = new_registry()
    metrics_server = start_metrics_server(
        registry, settings.host, settings.restd_metrics_port, "DEVCONNECT_RESTD_METRICS_PORT"
    )
    server = http_server(make_app(stores, registry), settings)
    server.listen(settings.restd_port, address=settings.host)
    return RunningRestd(server, metrics_server)


async def serve(settings: Settings) -> None:
    stores = open_stores(settings)
    await ensure_indexes_on_start(stores.db)
    running = start_restd(stores)
    log.info("restd listening", extra={"port": settings.restd_port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
    await stores.close()


def main(settings: Settings, _argv: list[str]) -> int:
    return run_service("restd", settings, serve)

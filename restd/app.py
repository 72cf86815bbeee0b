"""restd's composition: build the context, the routes, and serve."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import tornado.httpserver
import tornado.web

from core.logs import configure_logging
from core.metrics import new_registry
from core.mongo import ensure_indexes_on_start
from core.runtime import Stores, open_stores
from core.settings import Settings
from core.tracing import setup_tracing
from core.web import service_routes
from restd.context import RestContext
from restd.handlers.base import NotFoundHandler
from restd.metrics import RestMetrics
from restd.routes import url_rules

log = logging.getLogger(__name__)


def make_app(stores: Stores, **extra: Any) -> tornado.web.Application:
    registry = new_registry()
    ctx = RestContext.build(stores, RestMetrics(registry))
    routes: list[Any] = [*service_routes(stores.readiness, registry), *url_rules(ctx)]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx, "route": "unmatched"},
        **extra,
    )


async def serve(settings: Settings) -> None:
    stores = open_stores(settings)
    await ensure_indexes_on_start(stores.db)
    app = make_app(stores)
    server = tornado.httpserver.HTTPServer(app, xheaders=True)
    server.listen(settings.restd_port, address=settings.host)
    log.info("restd listening", extra={"port": settings.restd_port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await stores.close()


def main(settings: Settings, _argv: list[str]) -> int:
    configure_logging("restd", settings.log_level, settings.log_format)
    tracing = setup_tracing("restd", settings)
    try:
        asyncio.run(serve(settings))
    finally:
        if tracing is not None:
            tracing.shutdown()
    return 0

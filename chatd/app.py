"""chatd's composition: build the node, the routes, and serve."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import tornado.httpserver
import tornado.web

from core.logs import configure_logging
from core.metrics import new_registry
from core.mongo import ensure_indexes
from core.runtime import open_stores
from core.settings import Settings
from core.web import service_routes

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    stores = open_stores(settings)
    await ensure_indexes(stores.db)
    registry = new_registry()
    routes: list[Any] = [*service_routes(stores.readiness, registry)]
    app = tornado.web.Application(routes)
    server = tornado.httpserver.HTTPServer(app)
    server.listen(settings.chatd_port, address=settings.host)
    log.info("chatd listening", extra={"port": settings.chatd_port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await stores.close()


def main(settings: Settings, _argv: list[str]) -> int:
    configure_logging("chatd", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
    return 0

"""chatd's composition: settings -> stores -> the node's parts -> node -> Tornado; main().

``build_node`` is the one place that builds the store, inbox, presence and
router and wires the two hops that run back to the node: the store hands every
commit to ``Node.fanout`` (``MessageStore.attach``), the router every bus
message to ``Node.on_bus_message`` (``RedisRouter.attach``).

The chat port serves the socket and the probes; ``/metrics`` is on
``chatd_metrics_port`` (core/web.py), never on the port every client reaches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.web

from chatd.heads import StreamHeads
from chatd.inbox import Inbox
from chatd.metrics import ChatMetrics
from chatd.node import Node
from chatd.presence import Presence
from chatd.router import RedisRouter
from chatd.store import MessageStore
from chatd.transport import chat_routes
from core.health import Readiness
from core.metrics import new_registry, observe_gc_pauses
from core.mongo import ensure_indexes_on_start
from core.runtime import Stores, open_stores, run_service
from core.settings import Settings
from core.web import service_routes, start_metrics_server

log = logging.getLogger(__name__)


def make_app(node: Node, readiness: Readiness) -> tornado.web.Application:
    settings = node.settings
    routes: list[Any] = [*service_routes(readiness), *chat_routes(node)]
    return tornado.web.Application(
        routes,
        # Keepalive pings come from the node's one wheel (chatd/keepalive.py), not a
        # task per socket.
        websocket_ping_interval=0,
        websocket_max_message_size=settings.ws_max_frame_bytes,
    )


def build_node(settings: Settings, stores: Stores, metrics: ChatMetrics) -> Node:
    node_id = settings.node_id or f"chatd-{secrets.token_hex(4)}"
    inbox = Inbox(
        stores.db,
        on_error=lambda op: metrics.store_errors.labels(op).inc(),
        flush_interval_s=settings.inbox_flush_interval_ms / 1000,
        busy_interval_s=settings.inbox_busy_flush_interval_ms / 1000,
    )
    store = MessageStore(
        stores.db,
        inbox,
        batch_max=settings.persist_batch_max,
        persist_timeout_s=settings.persist_timeout_s,
        min_interval_s=settings.persist_min_interval_ms / 1000,
        observe_batch=metrics.observe_commit,
    )
    presence = Presence(stores.redis, stores.keys, node_id, settings.presence_ttl_s)
    router = RedisRouter(
        stores.redis,
        stores.keys,
        node_id,
        on_error=lambda op: metrics.bus_errors.labels(op).inc(),
    )
    node = Node(
        settings,
        stores,
        metrics,
        node_id=node_id,
        inbox=inbox,
        store=store,
        presence=presence,
        router=router,
    )
    store.attach(node)  # commits -> fan-out
    if settings.stream_heads_in_redis:
        store.keep_heads(
            StreamHeads(
                stores.redis,
                stores.keys,
                store.streams.max_seq,
                on_error=lambda op: metrics.bus_errors.labels(op).inc(),
            )
        )
    router.attach(node)  # other nodes' events -> local sessions
    return node


@dataclass
class RunningChatd:
    node: Node
    server: tornado.httpserver.HTTPServer
    metrics_server: tornado.httpserver.HTTPServer | None = None

    async def drain_and_stop(self) -> None:
        """SIGTERM: stop accepting, finish in-flight persists, close sockets in batches."""
        self.server.stop()
        await self.node.drain()
        await self.server.close_all_connections()
        await self.node.close()
        await self.node.stores.close()
        # Last: the drain's own metrics stay scrapable while it runs.
        await self.stop_metrics()

    async def stop_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
            await self.metrics_server.close_all_connections()
            self.metrics_server = None


async def start_chatd(settings: Settings) -> RunningChatd:
    # The driver's retryable-write machinery costs ~22% of its CPU per insert_many
    # (measured: 422 -> 330 us a call); chatd does its own retrying, idempotently:
    # a failed batch answers `unavailable` and the client resends the same tempId.
    stores = open_stores(settings, retryWrites=False)
    await ensure_indexes_on_start(stores.db)
    metrics = ChatMetrics(new_registry())
    node = build_node(settings, stores, metrics)

    async def not_draining() -> None:
        if node.draining:
            raise RuntimeError("draining")

    stores.readiness.add("chatd", not_draining)
    await node.start()
    metrics_server = start_metrics_server(
        metrics.registry,
        settings.host,
        settings.chatd_metrics_port,
        "DEVCONNECT_CHATD_METRICS_PORT",
    )
    server = tornado.httpserver.HTTPServer(make_app(node, stores.readiness))
    server.listen(settings.chatd_port, address=settings.host)
    log.info("chatd listening", extra={"port": settings.chatd_port, "nodeId": node.node_id})
    return RunningChatd(node, server, metrics_server)


# Collect the youngest generation less often: at chat rates the default (700
# allocations) runs it hundreds of times a second, and each run walks live objects.
GC_GEN0_THRESHOLD = 50_000


async def serve(settings: Settings) -> None:
    running = await start_chatd(settings)
    # Start-up objects (modules, settings, indexes) live for ever: move them out of
    # the collector's view so its passes stay short (the gc.freeze() idiom).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    unobserve_gc = observe_gc_pauses(running.node.metrics.gc_pause)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining on signal")
    try:
        await asyncio.wait_for(running.drain_and_stop(), settings.drain_timeout_s + 5)
    except TimeoutError:
        log.warning("drain exceeded its bound; exiting")
    unobserve_gc()


def main(settings: Settings, _argv: list[str]) -> int:
    return run_service("chatd", settings, serve)

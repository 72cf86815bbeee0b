"""Routing live events between nodes through the users' Redis shards.

Each user maps to one shard (``core.sharding``); that shard carries the user's
channel. A node subscribes only to the channels of users connected to it and
unsubscribes when they leave, so a message costs one PUBLISH on one shard,
whatever the number of nodes, and no node hears traffic for users it lacks.

Guarantee: best effort, at most once, in publish order per (publisher, user).
MongoDB is the source of truth; whatever the bus drops, clients recover with
``sync`` (and sessions read the store when they see a gap). ``watch`` returns
a future that resolves once Redis has confirmed the subscription: from then
on every event published for the user reaches this node, so a session that
waits for it before ``hello`` misses no live event published after ``hello``.

The listener never dies (STYLE 12): it reconnects with capped backoff,
re-subscribes, logs and skips a bad message, and drops its own echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from core.keys import Keys
from core.redis import RedisShards
from proto.bus import BusMessage, encode_bus_message, parse_bus_message

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
PUBLISH_QUEUE_MAX = 100_000
CLOSE_TIMEOUT_S = 2.0
# How long the listener waits for a message before it looks for new users to subscribe:
# a connecting socket's hello waits for its subscription, so this bounds that wait.
LISTEN_POLL_S = 0.01
SUBSCRIBE_CHUNK = 1000


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class BusListener(Protocol):
    """Who hears the bus messages for users held here (the node)."""

    def on_bus_message(self, message: BusMessage) -> None: ...


class _NoListener:
    def on_bus_message(self, message: BusMessage) -> None:
        return None


class Router(Protocol):
    """Carries bus messages to the nodes holding a user's sockets (see module docstring)."""

    def attach(self, listener: BusListener) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def watch(self, user_id: str) -> asyncio.Future[None]:
        """This node now holds sockets of user_id: receive their channel.

        The future resolves once the subscription is in place (at once if it was)."""

    def unwatch(self, user_id: str) -> None:
        """This node no longer holds sockets of user_id."""

    def publish(self, message: BusMessage) -> None:
        """Queue a message for the user's channel; never blocks, never raises."""


class RedisRouter:
    def __init__(
        self,
        redis: RedisShards,
        keys: Keys,
        node_id: str,
        on_error: Callable[[str], None] = lambda op: None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.listener: BusListener = _NoListener()
        self.on_error = on_error
        self._watched: list[set[str]] = [set() for _ in redis.clients]
        # Per shard, for its current listening connection: channels asked for, channels
        # Redis has confirmed, and the changes not sent yet. Kept as differences so a
        # socket opening costs the same with 10 or 10,000 users watched.
        self._subscribed: list[set[str]] = [set() for _ in redis.clients]
        self._confirmed: list[set[str]] = [set() for _ in redis.clients]
        self._to_add: list[set[str]] = [set() for _ in redis.clients]
        self._to_remove: list[set[str]] = [set() for _ in redis.clients]
        # Per shard: channel -> (un)subscribe commands sent and not yet answered.
        self._in_flight: list[dict[str, int]] = [{} for _ in redis.clients]
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._dirty: list[asyncio.Event] = [asyncio.Event() for _ in redis.clients]
        self._outbox: list[tuple[int, str, bytes]] = []
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.healthy: list[bool] = [True for _ in redis.clients]

    def attach(self, listener: BusListener) -> None:
        """Hand every bus message for our users to ``listener`` (chatd/app.py wires it)."""
        self.listener = listener

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for shard in range(len(self.redis.clients)):
            self._tasks.append(loop.create_task(self._listen(shard)))
        self._tasks.append(loop.create_task(self._publish_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Bounded: a listener stuck on a dead connection must not hold up shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), CLOSE_TIMEOUT_S
            )

    def watch(self, user_id: str) -> asyncio.Future[None]:
        shard = self.redis.index_for(user_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel = self.keys.user_channel(user_id)
        self._watched[shard].add(user_id)
        # Watched again before an unsubscribe went out: the subscription stands.
        self._to_remove[shard].discard(channel)
        subscribed = channel in self._subscribed[shard]
        if subscribed and self._settled(shard, channel):
            future.set_result(None)
            return future
        self._waiters.setdefault(channel, []).append(future)
        if not subscribed:
            # Not subscribed, or an unsubscribe already went out (its reply may still
            # be on its way, so "confirmed" would be stale): subscribe again and wait
            # for that reply.
            self._to_add[shard].add(channel)
            self._dirty[shard].set()
        return future

    def _settled(self, shard: int, channel: str) -> bool:
        """Redis has answered every (un)subscribe sent for the channel, the last one
        being a subscribe."""
        return channel in self._confirmed[shard] and not self._in_flight[shard].get(channel)

    def unwatch(self, user_id: str) -> None:
        shard = self.redis.index_for(user_id)
        channel = self.keys.user_channel(user_id)
        self._watched[shard].discard(user_id)
        if channel in self._to_add[shard]:
            self._to_add[shard].discard(channel)  # never sent: nothing to undo
        elif channel in self._subscribed[shard]:
            self._to_remove[shard].add(channel)
            self._dirty[shard].set()
        for future in self._waiters.pop(channel, []):
            future.cancel()

    def publish(self, message: BusMessage) -> None:
        if len(self._outbox) >= PUBLISH_QUEUE_MAX:
            self.on_error("publish-overflow")
            log.warning("publish queue full; dropping a live event (clients recover by sync)")
            return
        if not message.origin:
            message = message.model_copy(update={"origin": self.node_id})
        payload = encode_bus_message(message)
        shard = self.redis.index_for(message.user_id)
        self._outbox.append((shard, self.keys.user_channel(message.user_id), payload))
        self._outbox_ready.set()

    # -- publishing: one pipeline per shard per turn, in queue order --------------------

    async def _publish_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            by_shard: dict[int, list[tuple[str, bytes]]] = {}
            for shard, channel, payload in batch:
                by_shard.setdefault(shard, []).append((channel, payload))
            for shard, items in by_shard.items():
                pipe = self.redis.clients[shard].pipeline(transaction=False)
                for channel, payload in items:
                    pipe.publish(channel, payload)
                try:
                    await pipe.execute()
                except (RedisError, OSError) as exc:
                    self.on_error("publish")
                    log.warning(
                        "publish of %d live events to shard %d failed: %s", len(items), shard, exc
                    )

    # -- listening ------------------------------------------------------------------------

    async def _listen(self, shard: int) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            pubsub: PubSub | None = None
            try:
                # Subscribe confirmations are wanted: they resolve watch()'s futures.
                pubsub = self.redis.clients[shard].pubsub(ignore_subscribe_messages=False)
                # A new connection: everything watched is to be subscribed afresh.
                self._confirmed[shard].clear()
                self._subscribed[shard].clear()
                self._in_flight[shard].clear()
                self._to_remove[shard].clear()
                self._to_add[shard] = {self.keys.user_channel(u) for u in self._watched[shard]}
                while True:
                    if self._dirty[shard].is_set() or self._to_add[shard]:
                        self._dirty[shard].clear()
                        await self._sync_subscriptions(pubsub, shard)
                    if not self._subscribed[shard]:
                        # Nothing to hear: wait until a user of this shard connects.
                        await self._dirty[shard].wait()
                        continue
                    message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                    if not self.healthy[shard]:
                        self.healthy[shard] = True
                        log.info("listening to shard %d again", shard)
                    backoff = BACKOFF_MIN_S
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "message":
                        self._dispatch(message)
                    elif kind in ("subscribe", "unsubscribe"):
                        self._confirm(shard, message, kind == "subscribe")
            except asyncio.CancelledError:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            pubsub.aclose(),
                            CLOSE_TIMEOUT_S,
                        )
                raise
            except (RedisError, OSError) as exc:
                if self.healthy[shard]:
                    log.warning("listener for shard %d lost: %s; reconnecting", shard, exc)
                self.healthy[shard] = False
                self.on_error("listen")
            except Exception:  # keep listening whatever happens
                log.exception("listener for shard %d failed; restarting", shard)
            if pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _sync_subscriptions(self, pubsub: PubSub, shard: int) -> None:
        """Send the changes made since the last call, in commands of at most
        SUBSCRIBE_CHUNK channels. Each chunk counts as sent before its await, so
        a watch or unwatch meanwhile queues the opposite change; a failure drops
        the connection, and the next one subscribes everything watched afresh."""
        add, self._to_add[shard] = self._to_add[shard], set()
        remove, self._to_remove[shard] = self._to_remove[shard], set()
        in_flight = self._in_flight[shard]
        for chunk in _chunks(sorted(add), SUBSCRIBE_CHUNK):
            self._subscribed[shard].update(chunk)
            for channel in chunk:
                in_flight[channel] = in_flight.get(channel, 0) + 1
            await pubsub.subscribe(*chunk)
        for chunk in _chunks(sorted(remove), SUBSCRIBE_CHUNK):
            self._subscribed[shard].difference_update(chunk)
            for channel in chunk:
                in_flight[channel] = in_flight.get(channel, 0) + 1
            await pubsub.unsubscribe(*chunk)

    def _confirm(self, shard: int, raw: dict[str, Any], subscribed: bool) -> None:
        channel = raw.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        in_flight = self._in_flight[shard]
        left = in_flight.get(name, 0) - 1
        if left > 0:
            in_flight[name] = left
        else:
            in_flight.pop(name, None)
        if not subscribed:
            self._confirmed[shard].discard(name)
            return
        self._confirmed[shard].add(name)
        # Only the reply to the last command sent resolves the waiters: an earlier
        # subscribe's reply may be followed by an unsubscribe's.
        if self._settled(shard, name) and name in self._subscribed[shard]:
            for future in self._waiters.pop(name, []):
                if not future.done():
                    future.set_result(None)

    def _dispatch(self, raw: dict[str, Any]) -> None:
        try:
            message = parse_bus_message(raw["data"])
        except (ValidationError, KeyError, TypeError):
            log.warning("skipping a malformed bus message on %s", raw.get("channel"))
            return
        if message.origin == self.node_id:
            return  # our own echo: local sessions were served before publishing
        try:
            self.listener.on_bus_message(message)
        except Exception:
            log.exception("handling a bus message failed", extra={"kind": message.kind})

"""The node: owns the hub, the store, the router and presence, and fans messages out.

A message's path (STYLE 2), inbound: socket (transport.ChatSocket.on_message)
-> session dispatch (handlers.dispatch) -> message handler
(handlers.handle_private_message) -> store (store.MessageStore.submit, group
commit). Outbound: store's commit -> node fan-out (Node.fanout) -> hub lookup
(Hub.sessions) -> connection send (Session.offer / Session.send); recipients on
other nodes get it through the router (router.RedisRouter) and the same
Node.fanout path there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from chatd.hub import Hub
from chatd.limits import TokenBuckets
from chatd.metrics import ChatMetrics
from chatd.offline import OfflineMarks
from chatd.permissions import Permissions
from chatd.presence import Presence
from chatd.router import RedisRouter, Router
from chatd.session import Session
from chatd.store import MessageStore, Skipped, StoredMessage
from core.auth import TokenIssuer
from core.ids import parse_object_id
from core.mongo import USERS
from core.relations import connections_of
from core.runtime import Stores
from core.sessions import Authenticator
from core.settings import Settings
from proto import frames
from proto.bus import BusMessage
from proto.errors import CloseCode
from proto.events import EPHEMERAL_EVENTS

log = logging.getLogger(__name__)

# After announcing that this node holds a user another node also holds: time for
# that node to hear it, after which the user's sockets read the store once.
HOLDER_SETTLE_S = 0.5
# Shutdown waits at most this long for background work to notice its cancellation.
CLOSE_TIMEOUT_S = 2.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class Node:
    def __init__(
        self, settings: Settings, stores: Stores, metrics: ChatMetrics, router: Router | None = None
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.metrics = metrics
        self.node_id = settings.node_id or f"chatd-{secrets.token_hex(4)}"
        self.hub = Hub()
        self.store = MessageStore(
            stores.db,
            batch_max=settings.persist_batch_max,
            persist_timeout_s=settings.persist_timeout_s,
            min_interval_s=settings.persist_min_interval_ms / 1000,
            observe_batch=self._observe_batch,
        )
        self.store.on_persisted = self.fanout
        self.permissions = Permissions(stores.db, settings.connection_cache_ttl_s)
        self.presence = Presence(stores.redis, stores.keys, self.node_id, settings.presence_ttl_s)
        self.router: Router = router or RedisRouter(
            stores.redis,
            stores.keys,
            self.node_id,
            self.on_bus_message,
            on_error=lambda op: metrics.bus_errors.labels(op).inc(),
        )
        self.authenticator = Authenticator(
            TokenIssuer(settings.jwt_secret, settings.jwt_access_ttl_s),
            stores.redis,
            stores.keys,
        )
        self.offline = OfflineMarks(
            stores.redis,
            stores.keys,
            settings.offline_email_quiet_s,
            on_error=lambda: metrics.bus_errors.labels("offline-mark").inc(),
        )
        self.message_limits = TokenBuckets(settings.msg_rate_per_s, settings.msg_burst)
        self.typing_limits = TokenBuckets(settings.typing_rate_per_s, settings.typing_burst)
        self.draining = False
        self._offline_timers: dict[str, asyncio.TimerHandle] = {}
        self._contacts: dict[str, list[str]] = {}  # per local user, for presence fan-out
        # Per local user: the other nodes holding sockets of that user. Live events
        # for a user held only here are served locally, with no Redis round trip.
        self._remote: dict[str, set[str]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        self.store.start()
        self.offline.start()
        await self.router.start()
        self.presence.start_heartbeat(
            self.hub.users,
            lambda: self.metrics.bus_errors.labels("presence").inc(),
            self._refresh_holders,
        )

    async def close(self) -> None:
        self._closed = True
        # Pending offline transitions would run against closed clients: drop them
        # (presence claims expire by TTL, which is what TTL presence is for).
        for timer in self._offline_timers.values():
            timer.cancel()
        self._offline_timers.clear()
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._background, return_exceptions=True), CLOSE_TIMEOUT_S
            )
        await self.store.close()
        await self.offline.close()
        await self.presence.close()
        await self.router.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.persist_batch.observe(size)
        self.metrics.persist_latency.observe(seconds)

    # -- sessions -------------------------------------------------------------------------

    async def open_session(self, session: Session) -> None:
        user = session.user_id
        unread = await self.store.unread_count(user)
        contacts = await connections_of(self.stores.db, user)
        # The first message to each contact then needs no store read of its own.
        self.permissions.prime(user, contacts)
        statuses = await self._statuses(contacts)
        cursor = await self.store.committed_head(user)
        # No await from here on: everything committed after `cursor` reaches this session.
        first = self.hub.add(session)
        self.router.watch(user)
        self._contacts[user] = contacts
        session.send(
            frames.hello(
                user,
                session.id,
                _now_ms(),
                str(cursor),
                unread,
                [
                    frames.presence_data(c, "online" if on else "offline", seen)
                    for c, (on, seen) in statuses.items()
                ],
            )
        )
        session.start_live(cursor)
        # Another node may have committed for this user before it learned we hold
        # them; one read shortly after hello picks up anything it did not publish.
        session.verify_soon()
        self.metrics.connects.inc()
        self.metrics.open_sockets.inc()
        if first:
            timer = self._offline_timers.pop(user, None)
            if timer is not None:
                timer.cancel()  # back within the grace period: no presence change
            else:
                self._spawn(self._went_online(user))

    def close_session(self, session: Session) -> None:
        session.closed = True
        self.metrics.disconnects.inc()
        self.metrics.open_sockets.dec()
        if self.hub.remove(session) and not self._closed:
            user = session.user_id
            self.router.unwatch(user)
            loop = asyncio.get_running_loop()
            self._offline_timers[user] = loop.call_later(
                self.settings.presence_grace_s, lambda: self._spawn(self._went_offline(user))
            )

    async def _statuses(self, users: list[str]) -> dict[str, tuple[bool, int | None]]:
        try:
            return await self.presence.statuses(users)
        except Exception as exc:  # presence degrades, the socket still opens
            log.warning("presence lookup failed: %s", exc)
            return {u: (self.hub.has_user(u), None) for u in users}

    async def _went_online(self, user: str) -> None:
        try:
            already = (await self.presence.statuses([user]))[user][0]
            holders = await self.presence.claim([user])
        except Exception as exc:
            log.warning("presence claim failed: %s", exc)
            already, holders = False, {}
        if not self.hub.has_user(user):
            return  # gone again while we were claiming; the offline path handles it
        self._remote[user] = self._remote.get(user, set()) | holders.get(user, set())
        self.router.publish(BusMessage(kind="holder", userId=user, holding=True))
        if holders.get(user):
            # Another node holds this user too. Until it has heard the announcement it
            # serves the user locally only; read the store once it surely has.
            loop = asyncio.get_running_loop()
            loop.call_later(HOLDER_SETTLE_S, self._verify_user, user)
        if already:
            return  # online on another node already
        self.metrics.presence_changes.labels("online").inc()
        frame = frames.presence(user, "online", None)
        for contact in self._contacts.get(user, []):
            self.send_to_user(contact, frame)

    async def _went_offline(self, user: str) -> None:
        self._offline_timers.pop(user, None)
        if self.hub.has_user(user):
            return
        contacts = self._contacts.pop(user, [])
        self._remote.pop(user, None)
        self.router.publish(BusMessage(kind="holder", userId=user, holding=False))
        try:
            elsewhere = await self.presence.release(user)
        except Exception as exc:
            log.warning("presence release failed: %s", exc)
            elsewhere = False
        if elsewhere:
            return
        seen = _now_ms()
        oid = parse_object_id(user)
        if oid is not None:
            try:
                await self.stores.db[USERS].update_one(
                    {"_id": oid}, {"$set": {"lastSeen": datetime.fromtimestamp(seen / 1000, UTC)}}
                )
            except PyMongoError as exc:  # lastSeen is informative; presence still goes out
                log.warning("could not store lastSeen: %s", exc)
        self.metrics.presence_changes.labels("offline").inc()
        frame = frames.presence(user, "offline", seen)
        for contact in contacts:
            self.send_to_user(contact, frame)

    def _verify_user(self, user: str) -> None:
        for session in self.hub.sessions(user):
            session.verify_soon()

    def _refresh_holders(self, holders: dict[str, set[str]]) -> None:
        """From the heartbeat: who else holds our users (dead nodes' claims have expired)."""
        for user, others in holders.items():
            if self.hub.has_user(user):
                self._remote[user] = others

    def _needs_publish(self, user_id: str, local: list[Session]) -> bool:
        """Local first; publish only if the user may have sockets on another node."""
        return not local or bool(self._remote.get(user_id))

    # -- delivery ---------------------------------------------------------------------

    def send_to_user(self, user_id: str, frame: dict[str, object]) -> None:
        """A live, non-stream frame (typing, presence, receipts) to every socket of the user."""
        ephemeral = frame["type"] in EPHEMERAL_EVENTS
        local = self.hub.sessions(user_id)
        for session in local:
            session.send(frame, ephemeral=ephemeral)
        if self._needs_publish(user_id, local):
            self.router.publish(BusMessage(kind="deliver", userId=user_id, event=frame))

    def fanout(self, stored: list[StoredMessage], skipped: list[Skipped]) -> None:
        """Called by the store right after a commit, in commit order: deliver, then ack."""
        now = time.monotonic()
        for message in stored:
            self.metrics.messages_persisted.inc()
            if message.received_at:
                self.metrics.fanout_latency.observe(now - message.received_at)
            if not self._offer(message.to_user_id, message, True, message.in_seq):
                self.offline.mark(message.to_user_id)  # no socket here: maybe an email later
            self._offer(message.from_user_id, message, False, message.out_seq)
        for hole in skipped:
            for session in self.hub.sessions(hole.user_id):
                session.offer(None, hole.inbound, hole.seq)

    def _offer(self, user_id: str, message: StoredMessage, inbound: bool, seq: int) -> bool:
        """Offer a stream position to the user's sockets; False if none is on this node."""
        local = self.hub.sessions(user_id)
        for session in local:
            session.offer(message, inbound, seq)
        if self._needs_publish(user_id, local):
            self.router.publish(
                BusMessage(
                    kind="message",
                    userId=user_id,
                    event=message.wire(),
                    seq=seq,
                    inbound=inbound,
                    originSession=message.origin_session or None,
                )
            )
        return bool(local)

    def on_bus_message(self, message: BusMessage) -> None:
        sessions = self.hub.sessions(message.user_id)
        if message.kind == "deliver" and message.event is not None:
            ephemeral = message.event.get("type") in EPHEMERAL_EVENTS
            for session in sessions:
                session.send(message.event, ephemeral=ephemeral)
        elif message.kind == "message" and message.event and message.seq is not None:
            stored = _stored_from_wire(message)
            for session in sessions:
                session.offer(stored, bool(message.inbound), message.seq)
        elif message.kind == "connection-changed" and message.other_user_id:
            self.permissions.invalidate(message.user_id, message.other_user_id)
        elif message.kind == "logout-all":
            for session in sessions:
                session.disconnect(CloseCode.LOGGED_OUT, "logged out everywhere")
        elif message.kind == "holder" and message.origin and self.hub.has_user(message.user_id):
            others = self._remote.setdefault(message.user_id, set())
            if message.holding:
                others.add(message.origin)
            else:
                others.discard(message.origin)

    async def catch_up(self, session: Session) -> None:
        read = await self.store.read_streams(
            session.user_id, session.cursor, self.settings.sync_limit_max
        )
        session.apply_catch_up(read.messages, read.cursor)

    # -- drain -----------------------------------------------------------------------------

    async def drain(self) -> None:
        """Finish in-flight persists, then close sockets with 1012 in staggered batches."""
        self.draining = True
        self.metrics.draining.set(1)
        deadline = time.monotonic() + self.settings.drain_timeout_s
        try:
            await asyncio.wait_for(self.store.flushed(), self.settings.drain_timeout_s / 2)
        except TimeoutError:
            log.warning("drain: persists still in flight at the half-way deadline")
        sessions = list(self.hub.all_sessions())
        batches = max(1, self.settings.drain_batches)
        per_batch = max(1, -(-len(sessions) // batches))
        window_s = max(0.0, deadline - time.monotonic() - 1.0)
        pause_s = window_s / batches
        max_delay = self.settings.reconnect_delay_max_ms
        log.info("draining %d sockets in %d batches", len(sessions), batches)
        for start in range(0, len(sessions), per_batch):
            for session in sessions[start : start + per_batch]:
                # Spread reconnects so a deploy causes no storm.
                delay = random.randint(max_delay // 10, max_delay)
                session.disconnect(CloseCode.SERVICE_RESTART, f'{{"reconnectAfterMs":{delay}}}')
            if start + per_batch < len(sessions):
                await asyncio.sleep(pause_s)
        await self.store.close()


def _stored_from_wire(message: BusMessage) -> StoredMessage:
    wire = message.event or {}
    return StoredMessage(
        message_id=wire["messageId"],
        conversation_id=wire["conversationId"],
        from_user_id=wire["fromUserId"],
        to_user_id=wire["toUserId"],
        text=wire["text"],
        created_at_ms=wire["createdAt"],
        in_seq=message.seq or 0 if message.inbound else 0,
        out_seq=0 if message.inbound else message.seq or 0,
        origin_session=message.origin_session or "",
    )

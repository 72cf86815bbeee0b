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
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

from aiodataloader import DataLoader
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from chatd.expiry import ExpiryWheel
from chatd.hub import Hub
from chatd.inbox import Inbox
from chatd.keepalive import KeepAlive
from chatd.limits import TokenBuckets
from chatd.metrics import ChatMetrics
from chatd.offline import OfflineMarks
from chatd.permissions import Permissions
from chatd.presence import Presence
from chatd.router import Router
from chatd.session import Session
from chatd.store import MessageStore, Skipped, StoredMessage
from chatd.transitions import PresenceTransitions
from core.auth import JWT_LEEWAY_S, TokenIssuer
from core.relations import connections_of, contacts_of_many
from core.runtime import Stores
from core.sessions import Authenticator
from core.settings import Settings
from proto import frames
from proto.bus import BusMessage, ConnectionChanged, Deliver, Holder, LogoutAll, StreamMessage
from proto.errors import CloseCode
from proto.events import EPHEMERAL_EVENTS

log = logging.getLogger(__name__)

AUTH_RATE_PER_S = 1.0
AUTH_BURST = 10
# The signature check's leeway: a clock a little ahead of the issuer's does not cut a
# socket short.
TOKEN_EXPIRY_LEEWAY_S = JWT_LEEWAY_S
# Each revocation poll reads back this far before the previous one started.
REVOCATION_OVERLAP_S = 5.0
# How often the event loop's lag is sampled (chatd_loop_lag_seconds).
LOOP_LAG_PERIOD_S = 0.1
# Shutdown waits at most this long for background work to notice its cancellation.
CLOSE_TIMEOUT_S = 2.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class Node:
    def __init__(
        self,
        settings: Settings,
        stores: Stores,
        metrics: ChatMetrics,
        *,
        node_id: str,
        inbox: Inbox,
        store: MessageStore,
        presence: Presence,
        router: Router,
    ) -> None:
        """The node's parts are built by the composition root (``chatd/app.py``
        ``build_node``), which also attaches the node to the store (commits) and
        the router (bus messages)."""
        self.settings = settings
        self.stores = stores
        self.metrics = metrics
        self.node_id = node_id
        self.hub = Hub()
        self.inbox = inbox
        self.store = store
        self.permissions = Permissions(stores.db, settings.connection_cache_ttl_s)
        self.presence = presence
        self.router = router
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
        # Renewing a token is rare (once per token lifetime per socket).
        self.auth_limits = TokenBuckets(AUTH_RATE_PER_S, AUTH_BURST)
        self.read_limits = TokenBuckets(settings.read_rate_per_s, settings.read_burst)
        self.sync_limits = TokenBuckets(settings.sync_rate_per_s, settings.sync_burst)
        self.ping_limits = TokenBuckets(settings.ping_rate_per_s, settings.ping_burst)
        self.handshake_limits = TokenBuckets(
            settings.handshake_rate_per_s, settings.handshake_burst
        )
        self.draining = False
        # Every open session's keepalive ping, on one timer.
        self.keepalive = KeepAlive(settings.ws_ping_interval_s)
        # Open sessions by the second their access token expires (`auth` refiles them).
        self.expiries: ExpiryWheel[Session] = ExpiryWheel()
        # Bounds the sockets being opened at once (hello's reads); the rest queue.
        self._admission = asyncio.Semaphore(settings.hello_concurrency)
        self._contacts: dict[str, list[str]] = {}  # per local user, for presence fan-out
        self._contact_lists: DataLoader[str, list[str]] | None = None
        # Per local user: the other nodes holding sockets of that user. Live events
        # for a user held only here are served locally, with no Redis round trip.
        self._remote: dict[str, set[str]] = {}
        # Users coming online or going offline here, applied in batches (chatd/transitions.py).
        self.transitions = PresenceTransitions(
            hub=self.hub,
            presence=presence,
            router=router,
            metrics=metrics,
            db=stores.db,
            grace_s=settings.presence_grace_s,
            contacts=self._contacts,
            remote=self._remote,
            send_to_user=self.send_to_user,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        self.inbox.start()
        self.store.start()
        self.offline.start()
        self._spawn(self.transitions.run())
        self._spawn(self._watch_loop_lag())
        self._spawn(self._expire_tokens())
        self._spawn(self._poll_revocations())
        if self.settings.ws_ping_interval_s > 0:
            self._spawn(self.keepalive.run())
        await self.router.start()
        self.presence.start_heartbeat(
            self.hub.users,
            lambda: self.metrics.bus_errors.labels("presence").inc(),
            self._prune_holders,
        )

    async def close(self) -> None:
        self._closed = True
        self.transitions.close()
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._background, return_exceptions=True), CLOSE_TIMEOUT_S
            )
        await self.store.close()
        await self.inbox.close()
        await self.offline.close()
        await self.presence.close()
        await self.router.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- sessions -------------------------------------------------------------------------

    async def open_session(self, session: Session) -> None:
        """Admit a socket: register it, read what hello needs, then greet it.

        The session joins the hub first and the user's channel is subscribed
        before hello goes out, so every live event published from then on
        reaches it (held until hello, then sent in order), and every message
        committed after hello's cursor reaches it live. A store or Redis failure
        here raises; the transport closes the socket with 1013 (retry).
        """
        started = time.monotonic()
        self.metrics.opening.inc()
        try:
            await self._admit(session)
        finally:
            self.metrics.opening.dec()
        if session.greeted:
            self.metrics.hello_latency.observe(time.monotonic() - started)

    async def _admit(self, session: Session) -> None:
        user = session.user_id
        async with self._admission:
            if session.closed:
                return  # the client gave up while waiting its turn
            if len(self.hub.sessions(user)) >= self.settings.max_sockets_per_user:
                self.metrics.handshake_refusals.labels("too-many-sockets").inc()
                session.disconnect(CloseCode.TOO_MANY_SOCKETS, "too many sockets for this user")
                return
            first = self.hub.add(session)
            subscribed = self.router.watch(user)
            try:
                unread, contacts, _ = await asyncio.gather(
                    self.inbox.unread_total(user),
                    self._contacts_of(user),
                    self._wait_subscribed(subscribed),
                )
                # Once subscribed: the head from the store (a commit on another node
                # after this read is published after it, so it reaches us; one before
                # it is inside the cursor), and the revocation again (a logout-all
                # between the handshake's check and the subscription was published
                # before we listened).
                statuses, cursor, revoked = await asyncio.gather(
                    self._statuses(contacts),
                    self.store.committed_head(user),
                    self.authenticator.is_revoked(user, session.token_issued_at_ms),
                )
            except BaseException:
                subscribed.cancel()
                self._abandon(session)
                raise
        if _closed(session) or revoked:
            self._abandon(session)  # closed while opening: it never counted as open
            if revoked:
                self.metrics.handshake_refusals.labels("revoked").inc()
                session.disconnect(CloseCode.LOGGED_OUT, "logged out everywhere")
            return
        # The first message to each contact then needs no store read of its own (the
        # list stands only when read after the last change, core/relations.py).
        self.permissions.prime(user, contacts)
        self._contacts[user] = contacts
        session.greet(
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
                session.token_expires_at_s or None,
            ),
            cursor,
        )
        self.expiries.track(session)
        self.keepalive.add(session)
        self.metrics.connects.inc()
        self.metrics.open_sockets.inc()
        if first:
            self.transitions.arrived(user)

    async def _contacts_of(self, user: str) -> list[str]:
        """The user's contact list, read together with those of the sockets opening in
        the same loop turn (one read by _id for all of them)."""
        if self._contact_lists is None:
            # Created on first use, inside the running loop the loader schedules on.
            self._contact_lists = DataLoader(
                partial(contacts_of_many, self.stores.db), cache=False, max_batch_size=500
            )
        return await self._contact_lists.load(user)

    def _abandon(self, session: Session) -> None:
        if self.hub.remove(session) and not self.hub.has_user(session.user_id):
            self.router.unwatch(session.user_id)

    async def _wait_subscribed(self, subscribed: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(
                asyncio.shield(subscribed), self.settings.hello_subscribe_timeout_s
            )
        except TimeoutError:
            # Redis is slow or down: open anyway (messages still arrive through the
            # store and sync); live events may be missed until the listener is back.
            self.metrics.bus_errors.labels("subscribe-timeout").inc()
            log.warning("hello: subscription not confirmed in time; opening degraded")

    def close_session(self, session: Session) -> None:
        session.closed = True
        if not session.greeted:
            return  # not opened yet: open_session sees `closed` and cleans up
        self.expiries.discard(session)
        self.keepalive.discard(session)
        self.metrics.disconnects.inc()
        self.metrics.open_sockets.dec()
        if self.hub.remove(session) and not self._closed:
            user = session.user_id
            self.router.unwatch(user)
            self.transitions.left(user)

    async def _statuses(self, users: list[str]) -> dict[str, tuple[bool, int | None]]:
        try:
            return await self.presence.statuses(users)
        except Exception as exc:  # presence degrades, the socket still opens
            log.warning("presence lookup failed: %s", exc)
            return {u: (self.hub.has_user(u), None) for u in users}

    async def _watch_loop_lag(self) -> None:
        """Every LOOP_LAG_PERIOD_S, how much later than asked the loop woke us."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LOOP_LAG_PERIOD_S)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - asked - LOOP_LAG_PERIOD_S))

    async def _refresh_contacts(self, user: str) -> None:
        try:
            contacts = await connections_of(self.stores.db, user)
        except PyMongoError as exc:
            log.warning("could not refresh contacts after a connection change: %s", exc)
            self._contacts[user] = []  # fail closed: no presence until the next hello
            return
        if self.hub.has_user(user):
            self._contacts[user] = contacts
            self.permissions.prime(user, contacts)

    def _prune_holders(self, live_nodes: set[str]) -> None:
        """From the heartbeat: forget other holders whose node has no live lease."""
        for others in self._remote.values():
            others &= live_nodes

    async def _poll_revocations(self) -> None:
        """Once a presence period, the logout-alls recorded since the last look.

        The bus closes a logged-out user's sockets at once; this closes them
        within one period even when that message was lost. It reads only what is
        new on each shard (revocations are rare), whatever the number of sockets.
        The window overlaps the last one, so a write with a slightly older
        timestamp is not missed, and closing twice is harmless.
        """
        period = self.presence.period_s
        since_ms = _now_ms()
        while True:
            await asyncio.sleep(period * random.uniform(0.8, 1.0))
            started_ms = _now_ms()
            for shard in range(len(self.stores.redis)):
                try:
                    revoked = await self.authenticator.revocations_since(shard, since_ms)
                except (RedisError, OSError) as exc:
                    self.metrics.bus_errors.labels("revocation-check").inc()
                    log.warning("revocation poll of shard %d failed: %s", shard, exc)
                    continue
                for user, up_to_ms in revoked.items():
                    for session in self.hub.sessions(user):
                        if session.token_issued_at_ms <= up_to_ms:
                            session.disconnect(CloseCode.LOGGED_OUT, "logged out everywhere")
            since_ms = started_ms - int(REVOCATION_OVERLAP_S * 1000)

    async def _expire_tokens(self) -> None:
        """Close sockets whose access token expired without an `auth` frame renewing it."""
        while True:
            await asyncio.sleep(self.settings.token_check_interval_s)
            for session in self.expiries.due(time.time() - TOKEN_EXPIRY_LEEWAY_S):
                if not session.closed:
                    self.metrics.tokens_expired.inc()
                    session.disconnect(
                        CloseCode.TOKEN_EXPIRED, "access token expired: reconnect with a fresh one"
                    )

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
            self.router.publish(Deliver(userId=user_id, event=frame))

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
                StreamMessage(
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
        match message:
            case Deliver(event=event):
                ephemeral = event.get("type") in EPHEMERAL_EVENTS
                for session in sessions:
                    session.send(event, ephemeral=ephemeral)
            case StreamMessage() if message.event:
                stored = StoredMessage.from_bus(message)
                for session in sessions:
                    session.offer(stored, message.inbound, message.seq)
            case ConnectionChanged() if message.other_user_id:
                self.permissions.invalidate(message.user_id, message.other_user_id)
                if self.hub.has_user(message.user_id):
                    # Presence goes to the contacts read at hello: a block or a removal
                    # must take the other user off that list now, an accept add them.
                    self._spawn(self._refresh_contacts(message.user_id))
            case LogoutAll():
                for session in sessions:
                    session.disconnect(CloseCode.LOGGED_OUT, "logged out everywhere")
            case Holder() if message.origin and self.hub.has_user(message.user_id):
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


def _closed(session: Session) -> bool:
    # A function, not an attribute test: the session may close during the awaits
    # above, which a type checker narrowing `session.closed` cannot see.
    return session.closed

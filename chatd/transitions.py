"""Presence transitions of the users held by this node, applied in batches.

The node reports two things: a user's first socket here opened (``arrived``)
and a user's last socket here closed (``left``). A user who left is given
``grace_s`` to come back (a reconnect causes no presence change); after that,
or at once for an arrival, the user joins a batch that one loop (``run``)
applies: a thousand sockets closing at once make one pipeline per shard and
one bulk write of lastSeen, not a thousand concurrent round trips.

Applying a batch claims or releases the users' presence (chatd/presence.py),
announces on the bus that this node holds them or no longer does (``holder``),
and sends ``presence`` frames to their contacts unless another node holds
them too. It reads and updates two maps the node shares with it: ``contacts``
(per local user, the contacts read at hello) and ``remote`` (per local user,
the other nodes holding sockets of that user).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from chatd.hub import Hub
from chatd.metrics import ChatMetrics
from chatd.presence import Presence
from chatd.router import Router
from core.ids import parse_object_id
from core.mongo import USERS, Doc
from proto import frames
from proto.bus import Holder

log = logging.getLogger(__name__)

# After announcing that this node holds a user another node also holds: time for
# that node to hear it, after which the user's sockets read the store once.
HOLDER_SETTLE_S = 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False, kw_only=True)
class PresenceTransitions:
    hub: Hub
    presence: Presence
    router: Router
    metrics: ChatMetrics
    db: AsyncDatabase[Doc]
    grace_s: float
    contacts: dict[str, list[str]]
    remote: dict[str, set[str]]
    send_to_user: Callable[[str, dict[str, object]], None]

    def __post_init__(self) -> None:
        self._going_online: set[str] = set()
        self._going_offline: set[str] = set()
        self._wake = asyncio.Event()
        self._offline_timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False

    def arrived(self, user: str) -> None:
        """The user's first socket on this node opened."""
        timer = self._offline_timers.pop(user, None)
        if timer is not None:
            timer.cancel()  # back within the grace period: no presence change
        else:
            self._going_offline.discard(user)
            self._going_online.add(user)
            self._wake.set()

    def left(self, user: str) -> None:
        """The user's last socket on this node closed: offline after the grace period."""
        loop = asyncio.get_running_loop()
        self._offline_timers[user] = loop.call_later(self.grace_s, self._grace_over, user)

    def close(self) -> None:
        """Drop pending offline transitions: they would run against closed clients
        (presence claims expire by TTL, which is what TTL presence is for)."""
        self._closed = True
        for timer in self._offline_timers.values():
            timer.cancel()
        self._offline_timers.clear()

    def _grace_over(self, user: str) -> None:
        self._offline_timers.pop(user, None)
        if self.hub.has_user(user) or self._closed:
            return
        self._going_online.discard(user)
        self._going_offline.add(user)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            online, self._going_online = self._going_online, set()
            offline, self._going_offline = self._going_offline, set()
            try:
                if online:
                    await self._went_online(online)
                if offline:
                    await self._went_offline(offline)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything
                log.exception("presence batch failed")

    async def _went_online(self, users: set[str]) -> None:
        try:
            holders = await self.presence.claim(users)
        except (RedisError, OSError) as exc:
            self.metrics.bus_errors.labels("presence").inc()
            log.warning("presence claim of %d users failed: %s", len(users), exc)
            holders = {}
        loop = asyncio.get_running_loop()
        for user in users:
            if not self.hub.has_user(user):
                continue  # gone again while we were claiming; the offline path handles it
            others = holders.get(user, set())
            self.remote[user] = self.remote.get(user, set()) | others
            self.router.publish(Holder(userId=user, holding=True))
            if others:
                # Another node holds this user too. Until it has heard the announcement
                # it serves the user locally only; read the store once it surely has.
                loop.call_later(HOLDER_SETTLE_S, self._verify_user, user)
                continue  # online on another node already: no presence change
            self.metrics.presence_changes.labels("online").inc()
            frame = frames.presence(user, "online", None)
            for contact in self.contacts.get(user, []):
                self.send_to_user(contact, frame)

    async def _went_offline(self, users: set[str]) -> None:
        gone = [u for u in users if not self.hub.has_user(u)]
        contacts = {u: self.contacts.pop(u, []) for u in gone}
        for user in gone:
            self.remote.pop(user, None)
            self.router.publish(Holder(userId=user, holding=False))
        try:
            elsewhere = await self.presence.release(gone)
        except (RedisError, OSError) as exc:
            # The claims expire by TTL; tell contacts now rather than in 30 s.
            self.metrics.bus_errors.labels("presence").inc()
            log.warning("presence release of %d users failed: %s", len(gone), exc)
            elsewhere = set()
        offline = [u for u in gone if u not in elsewhere and not self.hub.has_user(u)]
        if not offline:
            return
        seen = _now_ms()
        await self._store_last_seen(offline, seen)
        for user in offline:
            self.metrics.presence_changes.labels("offline").inc()
            frame = frames.presence(user, "offline", seen)
            for contact in contacts[user]:
                self.send_to_user(contact, frame)

    async def _store_last_seen(self, users: list[str], seen_ms: int) -> None:
        """One bulk write for the batch; lastSeen is informative, presence goes out anyway."""
        when = datetime.fromtimestamp(seen_ms / 1000, UTC)
        ops = [
            UpdateOne({"_id": oid}, {"$set": {"lastSeen": when}})
            for oid in (parse_object_id(u) for u in users)
            if oid is not None
        ]
        if not ops:
            return
        try:
            await self.db[USERS].bulk_write(ops, ordered=False)
        except PyMongoError as exc:
            self.metrics.store_errors.labels("last-seen").inc()
            log.warning("could not store lastSeen of %d users: %s", len(ops), exc)

    def _verify_user(self, user: str) -> None:
        for session in self.hub.sessions(user):
            session.verify_soon()

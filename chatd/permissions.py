"""May A message B? A cached answer to ``core.relations.are_connected``.

Cached per pair for a bounded time; restd publishes ``connection-changed`` on
both users' channels when a connection is accepted, removed or blocked, and
the node drops the pair's entry at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from pymongo.asynchronous.database import AsyncDatabase

from core.ids import pair_key, parse_object_id
from core.mongo import USERS, Doc
from core.relations import are_connected

MAX_CACHED_PAIRS = 500_000


class Permissions:
    def __init__(self, db: AsyncDatabase[Doc], ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._cache: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        # user -> the others it has cached pairs with, so prime() can drop stale ones.
        self._pairs_of: dict[str, set[str]] = {}

    async def may_message(self, sender: str, recipient: str) -> bool:
        key = pair_key(sender, recipient)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        allowed = await are_connected(self.db, sender, recipient)
        self._cache[key] = (allowed, now + self.ttl_s)
        # The sender is connected here, so its next hello on this node primes (and
        # cleans) its pairs: tracking the sender's side is enough.
        if len(self._pairs_of) < MAX_CACHED_PAIRS:
            self._pairs_of.setdefault(sender, set()).add(recipient)
        self._cache.move_to_end(key)
        if len(self._cache) > MAX_CACHED_PAIRS:
            self._cache.popitem(last=False)
        return allowed

    def prime(self, user: str, contacts: list[str]) -> None:
        """Record the user's contacts as connected, and forget every other cached pair
        of the user: a block placed while neither socket was on this node (so its
        invalidation never reached us) cannot outlive the user's next hello here."""
        expires = time.monotonic() + self.ttl_s
        current = set(contacts)
        for other in self._pairs_of.pop(user, set()) - current:
            self._cache.pop(pair_key(user, other), None)
        for other in contacts:
            key = pair_key(user, other)
            self._cache[key] = (True, expires)
            self._cache.move_to_end(key)
        self._pairs_of[user] = current
        while len(self._cache) > MAX_CACHED_PAIRS:
            self._cache.popitem(last=False)

    def invalidate(self, user_a: str, user_b: str) -> None:
        self._cache.pop(pair_key(user_a, user_b), None)

    async def user_exists(self, user_id: str) -> bool:
        oid = parse_object_id(user_id)
        if oid is None:
            return False
        return await self.db[USERS].find_one({"_id": oid}, projection={"_id": 1}) is not None

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

    async def may_message(self, sender: str, recipient: str) -> bool:
        key = pair_key(sender, recipient)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        allowed = await are_connected(self.db, sender, recipient)
        self._cache[key] = (allowed, now + self.ttl_s)
        self._cache.move_to_end(key)
        if len(self._cache) > MAX_CACHED_PAIRS:
            self._cache.popitem(last=False)
        return allowed

    def prime(self, user: str, contacts: list[str]) -> None:
        """Record pairs known to be connected (read at connect time anyway)."""
        expires = time.monotonic() + self.ttl_s
        for other in contacts:
            key = pair_key(user, other)
            self._cache[key] = (True, expires)
            self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED_PAIRS:
            self._cache.popitem(last=False)

    def invalidate(self, user_a: str, user_b: str) -> None:
        self._cache.pop(pair_key(user_a, user_b), None)

    async def user_exists(self, user_id: str) -> bool:
        oid = parse_object_id(user_id)
        if oid is None:
            return False
        return await self.db[USERS].find_one({"_id": oid}, projection={"_id": 1}) is not None

"""The ranked list in Redis as immutable snapshots, paged by cursor.

``recommendations:user:{id}`` (core.keys) holds the id of the user's current
snapshot, with the TTL from settings. The snapshot itself is a Redis list
next to it (``recommendations:user:{id}:{snapshot}``): a header, then one
JSON item per candidate in rank order. A cursor names the snapshot and an
offset, so every page of one snapshot comes from the same frozen list: pages
never repeat or skip an item while it lives. Invalidation drops only the
pointer; the next first page ranks afresh, and a client already paging keeps
its snapshot until the TTL ends it (then the cursor is refused as expired).

The header names the model that ranked the snapshot (``model``: its version,
or null for weights): every page read returns it, so impressions record the
model that ranked what was shown, and a first page ranked by another model
than the user's current one is ranked afresh (``FeedService.page``).

All of one user's keys live on that user's shard.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from core.keys import FeedKeys, Keys
from core.redis import RedisShards

CURSOR_PATTERN = r"^[0-9a-f]{16}\.[0-9]{1,6}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def make_cursor(snapshot: str, offset: int) -> str:
    return f"{snapshot}.{offset}"


def parse_cursor(cursor: str) -> tuple[str, int] | None:
    if not _CURSOR.match(cursor):
        return None
    snapshot, _, offset = cursor.partition(".")
    return snapshot, int(offset)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class SnapshotPage:
    header: dict[str, Any]
    items: list[bytes]


class SnapshotCache:
    def __init__(self, redis: RedisShards, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = FeedKeys(keys)
        self.ttl_s = ttl_s

    async def current(self, user_id: str) -> str | None:
        raw = await self.redis.for_user(user_id).get(self.keys.pointer(user_id))
        return _text(raw) if raw else None

    async def write(self, user_id: str, header: dict[str, object], items: list[bytes]) -> str:
        """Store a new snapshot and make it current; returns its id."""
        snapshot = secrets.token_hex(8)
        key = self.keys.snapshot(user_id, snapshot)
        async with self.redis.for_user(user_id).pipeline(transaction=True) as pipe:
            pipe.rpush(key, orjson.dumps(header), *items)
            pipe.expire(key, self.ttl_s)
            pipe.set(self.keys.pointer(user_id), snapshot, ex=self.ttl_s)
            await pipe.execute()
        return snapshot

    async def read(
        self, user_id: str, snapshot: str, offset: int, count: int
    ) -> SnapshotPage | None:
        """The header and items ``offset .. offset+count-1``; None when the snapshot is gone."""
        key = self.keys.snapshot(user_id, snapshot)
        async with self.redis.for_user(user_id).pipeline(transaction=False) as pipe:
            pipe.lindex(key, 0)
            pipe.lrange(key, offset + 1, offset + count)
            header, items = await pipe.execute()
        if header is None:
            return None
        parsed = orjson.loads(header)
        return SnapshotPage(parsed if isinstance(parsed, dict) else {}, list(items))

    async def invalidate(self, *user_ids: str) -> None:
        for user_id in user_ids:
            await self.redis.for_user(user_id).delete(self.keys.pointer(user_id))

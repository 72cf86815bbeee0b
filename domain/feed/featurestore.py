"""Redis-cached graph and profile features: who is connected to whom, and profile cards.

Ranking one user reads the connections of dozens of people and the profiles
of up to the candidate cap. From Mongo that is hundreds of queries per feed
(the embedded nx-27017 serves no ``$in`` from an index: a table scan each),
so the feed keeps each person's connection list and profile card in Redis,
filled on a miss and dropped by the same hooks that invalidate the ranked
list (a connection, request or block change drops both users' lists; a
profile change drops the card). The TTL bounds how stale a card's activity
time can get. All of one user's keys live on that user's shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from pymongo.asynchronous.database import AsyncDatabase

from core.keys import FeedKeys
from core.mongo import CONNECTION_REQUESTS, USERS, Doc
from core.redis import RedisShards
from domain.feed.store import ACCEPTED, IN_CHUNK, PERSON_PROJECTION, object_ids, prepared

FEATURE_TTL_S = 24 * 3600
# Shared candidate pools (people with a skill, in a place, the latest sign-ups):
# the same for every user who asks, so one read serves everyone for a while.
POOL_TTL_S = 300
# Concurrent Mongo reads when filling misses; the store is one process.
MISS_CONCURRENCY = 16


def _card(doc: Doc) -> bytes:
    card: dict[str, Any] = {}
    for name in PERSON_PROJECTION:
        value = doc.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        if value is not None:
            card[name] = value
    card["_id"] = str(doc["_id"])
    card["_pre"] = prepared(doc)
    return orjson.dumps(card)


class FeatureStore:
    def __init__(self, db: AsyncDatabase[Doc], redis: RedisShards, keys: FeedKeys) -> None:
        self.db = db
        self.redis = redis
        self.keys = keys

    async def _mget(self, ids: Sequence[str], key_of: Any) -> dict[str, bytes]:
        by_shard: dict[int, list[str]] = {}
        for user in ids:
            by_shard.setdefault(self.redis.index_for(user), []).append(user)
        found: dict[str, bytes] = {}
        for shard, users in by_shard.items():
            values = await self.redis.clients[shard].mget([key_of(u) for u in users])
            for user, value in zip(users, values, strict=True):
                if value is not None:
                    found[user] = value if isinstance(value, bytes) else value.encode()
        return found

    async def _mset(self, values: dict[str, bytes], key_of: Any) -> None:
        by_shard: dict[int, dict[str, bytes]] = {}
        for user, value in values.items():
            by_shard.setdefault(self.redis.index_for(user), {})[key_of(user)] = value
        for shard, items in by_shard.items():
            async with self.redis.clients[shard].pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, ex=FEATURE_TTL_S)
                await pipe.execute()

    async def _read_connections(self, user: str, per_person_max: int) -> list[str]:
        others: dict[str, None] = {}
        requests = self.db[CONNECTION_REQUESTS]
        for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
            # Equality on one field: served by its single-field index everywhere.
            cursor = requests.find({mine: user}, projection={theirs: 1, "status": 1, "_id": 0})
            async for doc in cursor:
                if doc.get("status") == ACCEPTED:
                    others.setdefault(doc[theirs], None)
        return list(others)[:per_person_max]

    async def connections(self, people: Sequence[str], per_person_max: int) -> dict[str, list[str]]:
        """Each person's accepted connections (at most ``per_person_max``)."""
        cached = await self._mget(people, self.keys.adjacency)
        out = {
            p: (raw.decode().split(",") if raw else [])[:per_person_max]
            for p, raw in cached.items()
        }
        missing = [p for p in people if p not in cached]
        if missing:
            gate = asyncio.Semaphore(MISS_CONCURRENCY)

            async def read(person: str) -> tuple[str, list[str]]:
                async with gate:
                    return person, await self._read_connections(person, per_person_max)

            filled = dict(await asyncio.gather(*(read(p) for p in missing)))
            await self._mset(
                {p: ",".join(v).encode() for p, v in filled.items()}, self.keys.adjacency
            )
            out.update(filled)
        return out

    async def cards(self, ids: Sequence[str]) -> dict[str, Doc]:
        """Profile cards (the fields ranking and display read) by user id."""
        cached = await self._mget(ids, self.keys.card)
        out: dict[str, Doc] = {u: orjson.loads(raw) for u, raw in cached.items()}
        missing = [u for u in ids if u not in cached]
        fresh: dict[str, bytes] = {}
        for start in range(0, len(missing), IN_CHUNK):
            oids = object_ids(missing[start : start + IN_CHUNK])
            cursor = self.db[USERS].find({"_id": {"$in": oids}}, projection=PERSON_PROJECTION)
            async for doc in cursor:
                fresh[str(doc["_id"])] = _card(doc)
        if fresh:
            await self._mset(fresh, self.keys.card)
            out.update({u: orjson.loads(raw) for u, raw in fresh.items()})
        return out

    async def pool(self, name: str, load: Callable[[], Awaitable[list[Doc]]]) -> list[str]:
        """The ids of a shared candidate pool, read through ``load`` at most every POOL_TTL_S."""
        client = self.redis.primary
        key = self.keys.pool(name)
        raw = await client.get(key)
        if raw is not None:
            text = raw.decode() if isinstance(raw, bytes) else raw
            return text.split(",") if text else []
        docs = await load()
        ids = [str(d["_id"]) for d in docs]
        await self.remember_cards(docs)
        await client.set(key, ",".join(ids), ex=POOL_TTL_S)
        return ids

    async def remember_cards(self, docs: Iterable[Doc]) -> None:
        await self._mset({str(d["_id"]): _card(d) for d in docs}, self.keys.card)

    async def forget_connections(self, *users: str) -> None:
        for user in users:
            await self.redis.for_user(user).delete(self.keys.adjacency(user))

    async def forget_card(self, user: str) -> None:
        await self.redis.for_user(user).delete(self.keys.card(user))

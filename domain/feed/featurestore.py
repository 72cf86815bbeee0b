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

# Longer than a day: the nightly precompute's backfill renews every key before it expires.
FEATURE_TTL_S = 36 * 3600
# Shared candidate pools (people with a skill, in a place, the latest sign-ups):
# the same for every user who asks, so one read serves everyone for a while.
POOL_TTL_S = 300
# Concurrent Mongo reads when filling misses; the store is one process.
MISS_CONCURRENCY = 16
# Documents per cursor batch and keys per Redis pipeline during a backfill.
BACKFILL_BATCH = 5000


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

    def _by_shard(self, ids: Iterable[str]) -> dict[int, list[str]]:
        if len(self.redis.clients) == 1:  # no hashing of thousands of ids for one shard
            return {0: list(ids)}
        by_shard: dict[int, list[str]] = {}
        for user in ids:
            by_shard.setdefault(self.redis.index_for(user), []).append(user)
        return by_shard

    async def _mget(self, ids: Sequence[str], key_of: Any) -> dict[str, bytes]:
        by_shard = self._by_shard(ids)
        found: dict[str, bytes] = {}
        for shard, users in by_shard.items():
            values = await self.redis.clients[shard].mget([key_of(u) for u in users])
            for user, value in zip(users, values, strict=True):
                if value is not None:
                    found[user] = value if isinstance(value, bytes) else value.encode()
        return found

    async def _mset(self, values: dict[str, bytes], key_of: Any) -> None:
        for shard, users in self._by_shard(values).items():
            async with self.redis.clients[shard].pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.set(key_of(user), values[user], ex=FEATURE_TTL_S)
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

    async def warm_connections(self, users: Iterable[str], per_person_max: int) -> None:
        """Write ahead: read these people's connection lists now and store them."""
        filled = {u: await self._read_connections(u, per_person_max) for u in dict.fromkeys(users)}
        await self._mset({p: ",".join(v).encode() for p, v in filled.items()}, self.keys.adjacency)

    async def backfill(
        self, per_person_max: int, progress: Callable[[str], None] = lambda _m: None
    ) -> dict[str, int]:
        """Every card and connection list, from one pass over each collection.

        The lists are what ``connections`` would read through: accepted requests
        the person sent, then those they received, capped at ``per_person_max``.
        """
        sent: dict[str, list[str]] = {}
        received: dict[str, list[str]] = {}
        edges = 0
        cursor = self.db[CONNECTION_REQUESTS].find(
            {}, projection={"fromUserId": 1, "toUserId": 1, "status": 1, "_id": 0}
        )
        async for doc in cursor.batch_size(BACKFILL_BATCH):
            if doc.get("status") == ACCEPTED:
                a, b = doc["fromUserId"], doc["toUserId"]
                sent.setdefault(a, []).append(b)
                received.setdefault(b, []).append(a)
                edges += 1
        progress(f"read {edges} connections")
        people = 0
        batch: list[Doc] = []
        cursor = self.db[USERS].find({}, projection=PERSON_PROJECTION)
        async for doc in cursor.batch_size(BACKFILL_BATCH):
            batch.append(doc)
            if len(batch) >= BACKFILL_BATCH:
                people += await self._backfill_batch(batch, sent, received, per_person_max)
                batch = []
        people += await self._backfill_batch(batch, sent, received, per_person_max)
        progress(f"stored {people} cards and connection lists")
        return {"people": people, "connections": edges}

    async def _backfill_batch(
        self,
        docs: list[Doc],
        sent: dict[str, list[str]],
        received: dict[str, list[str]],
        per_person_max: int,
    ) -> int:
        lists: dict[str, bytes] = {}
        for doc in docs:
            user = str(doc["_id"])
            others = dict.fromkeys([*sent.get(user, ()), *received.get(user, ())])
            lists[user] = ",".join(list(others)[:per_person_max]).encode()
        await self._mset(lists, self.keys.adjacency)
        await self.remember_cards(docs)
        return len(docs)

    async def forget_connections(self, *users: str) -> None:
        for user in users:
            await self.redis.for_user(user).delete(self.keys.adjacency(user))

    async def forget_card(self, user: str) -> None:
        await self.redis.for_user(user).delete(self.keys.card(user))

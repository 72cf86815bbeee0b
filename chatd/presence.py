"""Cluster presence by TTL heartbeat (STYLE 11; centrifuge).

On the user's shard, hash ``presence:{user}`` maps each node holding a socket of
the user to the epoch second its claim expires. Nodes refresh their users'
claims every third of the TTL (with jitter), so a node that dies without a word
stops counting once its claims expire, and nothing needs cleaning up. A user is
online while any claim is unexpired.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable

from aiodataloader import DataLoader
from redis.exceptions import RedisError

from core.keys import Keys
from core.redis import RedisShards

log = logging.getLogger(__name__)

LAST_SEEN_TTL_S = 90 * 24 * 3600
# A period's refresh goes out in this many pipelines, evenly spaced.
HEARTBEAT_SLICES = 20


class Presence:
    def __init__(self, redis: RedisShards, keys: Keys, node_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.ttl_s = ttl_s
        self._heartbeat: asyncio.Task[None] | None = None
        self._status_loader: DataLoader[str, tuple[bool, int | None]] | None = None

    async def claim(self, user_ids: Iterable[str]) -> dict[str, set[str]]:
        """Claim (or refresh) this node's presence for these users, one pipeline per shard.

        Returns, per user, the other nodes that hold a live claim on them."""
        expiry = int(time.time() + self.ttl_s)
        others: dict[str, set[str]] = {}
        for shard, users in self._by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                key = self.keys.presence(user)
                pipe.hset(key, self.node_id, expiry)
                pipe.expire(key, int(self.ttl_s) + 1)
                pipe.hgetall(key)
            replies = await pipe.execute()
            for i, user in enumerate(users):
                others[user] = _live_nodes(replies[3 * i + 2]) - {self.node_id}
        return others

    async def release(self, user_ids: Iterable[str]) -> set[str]:
        """Drop this node's claims, one pipeline per shard; returns the users still
        online on another node."""
        now_ms = int(time.time() * 1000)
        elsewhere: set[str] = set()
        for shard, users in self._by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                key = self.keys.presence(user)
                pipe.hdel(key, self.node_id)
                pipe.hgetall(key)
                pipe.set(self.keys.last_seen(user), now_ms, ex=LAST_SEEN_TTL_S)
            replies = await pipe.execute()
            elsewhere |= {user for i, user in enumerate(users) if _any_live(replies[3 * i + 1])}
        return elsewhere

    def _by_shard(self, user_ids: Iterable[str]) -> dict[int, list[str]]:
        by_shard: dict[int, list[str]] = {}
        for user in user_ids:
            by_shard.setdefault(self.redis.index_for(user), []).append(user)
        return by_shard

    async def statuses(self, user_ids: list[str]) -> dict[str, tuple[bool, int | None]]:
        """user -> (online, last seen epoch ms) for many users.

        Lookups queued in the same loop turn (many sockets opening at once) go out
        together, one pipeline per shard."""
        if self._status_loader is None:
            self._status_loader = DataLoader(self._load_statuses, cache=False, max_batch_size=5000)
        found = await self._status_loader.load_many(user_ids)
        return dict(zip(user_ids, found, strict=True))

    async def _load_statuses(self, user_ids: list[str]) -> list[tuple[bool, int | None]]:
        result = await self._statuses_now(list(dict.fromkeys(user_ids)))
        return [result[u] for u in user_ids]

    async def _statuses_now(self, user_ids: list[str]) -> dict[str, tuple[bool, int | None]]:
        result: dict[str, tuple[bool, int | None]] = {}
        for shard, users in self._by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                pipe.hgetall(self.keys.presence(user))
                pipe.get(self.keys.last_seen(user))
            replies = await pipe.execute()
            for i, user in enumerate(users):
                claims, seen = replies[2 * i], replies[2 * i + 1]
                result[user] = (_any_live(claims), int(seen) if seen else None)
        return result

    def start_heartbeat(
        self,
        local_users: Callable[[], list[str]],
        on_error: Callable[[], None],
        on_holders: Callable[[dict[str, set[str]]], None],
    ) -> None:
        """Refresh every local user's claim once per period (a third of the TTL).

        Spread over the period in HEARTBEAT_SLICES pipelines, each a slice of the
        users as they stood when the period began: one pipeline for 10,000 users
        was a stall of the event loop every period, which every socket's latency
        felt. A user who connects meanwhile was claimed on connect.
        """

        async def beat() -> None:
            while True:
                period = self.ttl_s / 3 * random.uniform(0.8, 1.0)
                users = local_users()
                size = max(1, -(-len(users) // HEARTBEAT_SLICES))
                for tick in range(HEARTBEAT_SLICES):
                    await asyncio.sleep(period / HEARTBEAT_SLICES)
                    chunk = users[tick * size : (tick + 1) * size]
                    if not chunk:
                        continue
                    try:
                        on_holders(await self.claim(chunk))
                    except (RedisError, OSError) as exc:
                        on_error()
                        log.warning("presence heartbeat failed: %s", exc)

        self._heartbeat = asyncio.get_running_loop().create_task(beat())

    async def close(self) -> None:
        if self._heartbeat:
            self._heartbeat.cancel()


def _any_live(claims: dict[bytes, bytes]) -> bool:
    return bool(_live_nodes(claims))


def _live_nodes(claims: dict[bytes, bytes]) -> set[str]:
    now = time.time()
    return {node.decode() for node, expiry in claims.items() if float(expiry) > now}

"""Cluster presence: per-user claims, kept alive by one lease per node (core/presence.py).

A node claims a user when the user's first socket opens here (``claim``) and
drops the claim when the last one closes (``release``). Between the two it does
nothing per user: the heartbeat renews the node's own lease on every shard once
a period (a third of the TTL) and reads which leases are live, which every
status read then uses. A heartbeat that finds its lease gone (Redis restarted,
or the node stalled past the TTL) claims every local user on that shard again,
in slices. Presence keys carry a long TTL so a claim a dead node left behind is
removed in the end; the heartbeat re-claims a slice of local users each period
so that no live user's key reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable

from aiodataloader import DataLoader
from redis.exceptions import RedisError

from core.keys import Keys
from core.presence import claim_value, holders, lease_member, live_leases
from core.redis import RedisShards

log = logging.getLogger(__name__)

LAST_SEEN_TTL_S = 90 * 24 * 3600
# A presence key outlives any heartbeat by far; each local user's is re-claimed
# at least twice in this time.
PRESENCE_KEY_TTL_S = 6 * 3600
# Users claimed again in one pipeline when a shard lost our lease.
RECLAIM_SLICE = 500


class Presence:
    def __init__(self, redis: RedisShards, keys: Keys, node_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.incarnation = secrets.token_hex(4)
        self.ttl_s = ttl_s
        # Per shard: the node incarnations whose lease was live at the last heartbeat.
        self._leases: list[set[str]] = [set() for _ in redis.clients]
        self._heartbeat: asyncio.Task[None] | None = None
        self._status_loader: DataLoader[str, tuple[bool, int | None]] | None = None

    @property
    def period_s(self) -> float:
        return self.ttl_s / 3

    def live_nodes(self) -> set[str]:
        """Node ids with a live lease on any shard, as of the last heartbeat."""
        return {m.partition(":")[0] for leases in self._leases for m in leases}

    async def claim(self, user_ids: Iterable[str]) -> dict[str, set[str]]:
        """Claim these users for this node, one pipeline per shard.

        Returns, per user, the other nodes whose claim on them counts."""
        now = time.time()
        value = claim_value(int(now + self.ttl_s), self.incarnation)
        others: dict[str, set[str]] = {}
        for shard, users in self.redis.by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                key = self.keys.presence(user)
                pipe.hset(key, self.node_id, value)
                pipe.expire(key, PRESENCE_KEY_TTL_S)
                pipe.hgetall(key)
            replies = await pipe.execute()
            leases = self._leases[shard]
            for i, user in enumerate(users):
                others[user] = holders(replies[3 * i + 2], leases, now) - {self.node_id}
        return others

    async def release(self, user_ids: Iterable[str]) -> set[str]:
        """Drop this node's claims, one pipeline per shard; returns the users still
        online on another node."""
        now = time.time()
        elsewhere: set[str] = set()
        for shard, users in self.redis.by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                key = self.keys.presence(user)
                pipe.hdel(key, self.node_id)
                pipe.hgetall(key)
                pipe.set(self.keys.last_seen(user), int(now * 1000), ex=LAST_SEEN_TTL_S)
            replies = await pipe.execute()
            leases = self._leases[shard]
            elsewhere |= {
                user for i, user in enumerate(users) if holders(replies[3 * i + 1], leases, now)
            }
        return elsewhere

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
        now = time.time()
        result: dict[str, tuple[bool, int | None]] = {}
        for shard, users in self.redis.by_shard(user_ids).items():
            pipe = self.redis.clients[shard].pipeline(transaction=False)
            for user in users:
                pipe.hgetall(self.keys.presence(user))
                pipe.get(self.keys.last_seen(user))
            replies = await pipe.execute()
            leases = self._leases[shard]
            for i, user in enumerate(users):
                claims, seen = replies[2 * i], replies[2 * i + 1]
                result[user] = (bool(holders(claims, leases, now)), int(seen) if seen else None)
        return result

    async def renew_lease(self) -> list[bool | None]:
        """Renew this node's lease on every shard and read the live ones.

        Per shard: True if our lease was missing (the first beat, Redis lost its
        data, or we stalled past the TTL), so that shard's users need claiming
        again; None if the shard failed (its claims fall back to their expiry)."""
        now = time.time()
        member = lease_member(self.node_id, self.incarnation)
        key = self.keys.node_leases()
        lost: list[bool | None] = []
        for shard, client in enumerate(self.redis.clients):
            pipe = client.pipeline(transaction=False)
            pipe.zadd(key, {member: now + self.ttl_s})
            pipe.zremrangebyscore(key, "-inf", now - self.ttl_s)
            pipe.zrangebyscore(key, now, "+inf")
            try:
                added, _, live = await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("presence lease on shard %d not renewed: %s", shard, exc)
                lost.append(None)
                continue
            self._leases[shard] = live_leases(live)
            lost.append(bool(added))
        return lost

    async def drop_lease(self) -> None:
        member = lease_member(self.node_id, self.incarnation)
        for client in self.redis.clients:
            try:
                await client.zrem(self.keys.node_leases(), member)
            except (RedisError, OSError) as exc:
                log.warning("could not drop the presence lease: %s", exc)

    def start_heartbeat(
        self,
        local_users: Callable[[], list[str]],
        on_error: Callable[[], None],
        on_live_nodes: Callable[[set[str]], None],
    ) -> None:
        """Once a period (jittered): renew the lease, then re-claim what needs it.

        Users of a shard that lost our lease are all claimed again, RECLAIM_SLICE
        per pipeline; otherwise only a slice sized so that every local user's key
        is renewed twice within PRESENCE_KEY_TTL_S.
        """

        async def beat() -> None:
            cursor = 0
            while True:
                try:
                    lost = await self.renew_lease()
                    if None in lost:
                        on_error()
                    on_live_nodes(self.live_nodes())
                    users = local_users()
                    if any(lost):
                        again = [u for u in users if lost[self.redis.index_for(u)]]
                        for start in range(0, len(again), RECLAIM_SLICE):
                            await self.claim(again[start : start + RECLAIM_SLICE])
                    elif users:
                        size = max(1, int(len(users) * self.period_s * 2 / PRESENCE_KEY_TTL_S) + 1)
                        cursor %= len(users)
                        await self.claim(users[cursor : cursor + size])
                        cursor += size
                except (RedisError, OSError) as exc:
                    on_error()
                    log.warning("presence heartbeat failed: %s", exc)
                await asyncio.sleep(self.period_s * random.uniform(0.8, 1.0))

        self._heartbeat = asyncio.get_running_loop().create_task(beat())

    async def close(self) -> None:
        if self._heartbeat:
            self._heartbeat.cancel()
        await self.drop_lease()

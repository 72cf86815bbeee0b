"""Redis shards via ``redis.asyncio`` (redis-py with hiredis).

The old aioredis package was folded into redis-py 4.2 and no longer imports on
Python 3.11 (its TimeoutError base-class clash), so redis-py is the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from core.sharding import shard_for

RedisClient = aioredis.Redis


class RedisShards:
    """One client per shard; ``for_user`` picks the user's shard by jump hash."""

    def __init__(
        self, urls: Sequence[str], *, pool_max: int = 64, pool_timeout_s: float = 10.0
    ) -> None:
        if not urls:
            raise ValueError("at least one Redis URL is required")
        self.urls = list(urls)
        # A blocking pool: past pool_max connections a command waits (up to the
        # timeout) for one to come back, where the default pool raised "Too many
        # connections" and the command was lost.
        self.clients: list[RedisClient] = [
            aioredis.Redis(
                connection_pool=aioredis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=pool_max,
                    timeout=pool_timeout_s,
                    socket_connect_timeout=2,
                    socket_timeout=5,
                    health_check_interval=15,
                    retry_on_timeout=False,
                )
            )
            for url in self.urls
        ]

    def __len__(self) -> int:
        return len(self.clients)

    def index_for(self, user_id: str) -> int:
        return shard_for(user_id, len(self.clients))

    def by_shard(self, user_ids: Iterable[str]) -> dict[int, list[str]]:
        """The users grouped by their shard's index, each group in the order given."""
        groups: dict[int, list[str]] = {}
        for user in user_ids:
            groups.setdefault(self.index_for(user), []).append(user)
        return groups

    def for_user(self, user_id: str) -> RedisClient:
        return self.clients[self.index_for(user_id)]

    @property
    def primary(self) -> RedisClient:
        """Shard 0: cluster-wide keys (control channel, rate limits by IP)."""
        return self.clients[0]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

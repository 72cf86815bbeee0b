"""Committed stream heads in Redis: what hello reads instead of two store reads a socket.

The heads and how they are written are in core/heads.py. Sockets opening in the
same loop turn read theirs in one pipeline a shard; a head missing there (an
expired key, a Redis restarted empty, an account from before signup recorded
them) is read from the store and recorded.

Why hello's cursor stays right (the trap in chatd/store.py):
- never ahead of the store: the writer records a head only after the commit
  that reached it, so every position inside a cursor read here is durable and
  is in ``sync`` and in history;
- never behind a commit the socket will not hear of: the writer records heads
  before the commit is fanned out (delivered here or published to other
  nodes), and hello reads them after its session is registered and its channel
  subscribed; a commit fanned out before that is inside the heads read, one
  fanned out after it reaches the socket live.

When recording fails (Redis down or slow past ``RECORD_TIMEOUT_S``) the commit
is delivered anyway, the error is counted, and the heads are recorded again
with the next commit. Until then a hello elsewhere can read a head that is
behind: the socket then receives those positions as soon as a later one
arrives (it fills the gap from the store, chatd/session.py), or by ``sync``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiodataloader import DataLoader
from redis.exceptions import RedisError

from core.heads import INBOUND, OUTBOUND, Heads, HeadsWriter
from core.keys import Keys
from core.redis import RedisShards

RECORD_TIMEOUT_S = 0.25


class StreamHeads:
    def __init__(
        self,
        redis: RedisShards,
        keys: Keys,
        load: Callable[[str, str], Awaitable[int]],
        on_error: Callable[[str], None],
    ) -> None:
        """``load(field, user)`` reads a stream's head from the store (``inKey`` or
        ``outKey``); ``on_error(op)`` counts a Redis failure."""
        self.redis = redis
        self.keys = keys
        self.load = load
        self.on_error = on_error
        self._loader: DataLoader[str, tuple[int, int]] | None = None
        self._writer = HeadsWriter(redis, keys)
        self._unrecorded: Heads = {}

    # -- the writer ---------------------------------------------------------------

    async def record(self, heads: Heads) -> None:
        """Raise the users' heads to these positions (bounded in time; never raises)."""
        pending = _merge(self._unrecorded, heads)
        self._unrecorded = {}
        try:
            await asyncio.wait_for(self._writer.raise_heads(pending), RECORD_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError):
            self.on_error("heads-record")
            # Kept for the next commit, which records them again with its own.
            self._unrecorded = _merge(self._unrecorded, pending)

    # -- hello --------------------------------------------------------------------

    async def read(self, user: str) -> tuple[int, int]:
        """The user's committed (inbound, outbound) heads, batched with every other
        read of the same loop turn."""
        if self._loader is None:
            # Created on first use, inside the running loop the loader schedules on.
            self._loader = DataLoader(self._read_many, cache=False, max_batch_size=500)
        return await self._loader.load(user)

    async def _read_many(self, users: list[str]) -> list[tuple[int, int]]:
        wanted = list(dict.fromkeys(users))
        found: dict[str, list[float | None]] = {}
        try:
            for shard, shard_users in self.redis.by_shard(wanted).items():
                pipe = self.redis.clients[shard].pipeline(transaction=False)
                for user in shard_users:
                    pipe.zmscore(self.keys.stream_heads(user), [INBOUND, OUTBOUND])
                found.update(zip(shard_users, await pipe.execute(), strict=True))
        except (RedisError, OSError):
            self.on_error("heads-read")  # every head from the store, as before Redis had them
        heads = await asyncio.gather(*(self._complete(u, found.get(u)) for u in wanted))
        by_user = dict(zip(wanted, heads, strict=True))
        # What came from the store is recorded, zeros too (an empty stream), in one
        # call for the whole turn; a commit's higher head wins (ZADD GT).
        loaded = [u for u in wanted if None in (found.get(u) or [None])]
        if loaded:
            await self.record({u: by_user[u] for u in loaded})
        return [by_user[u] for u in users]

    async def _complete(self, user: str, scores: list[float | None] | None) -> tuple[int, int]:
        """The heads Redis had, and the store's for those it did not."""
        inbound, outbound = scores if scores else (None, None)

        async def head(score: float | None, field: str) -> int:
            return int(score) if score is not None else await self.load(field, user)

        heads = await asyncio.gather(head(inbound, "inKey"), head(outbound, "outKey"))
        return heads[0], heads[1]


def _merge(older: Heads, newer: Heads) -> Heads:
    merged = dict(older)
    for user, (inbound, outbound) in newer.items():
        was_in, was_out = merged.get(user, (None, None))
        merged[user] = (_higher(was_in, inbound), _higher(was_out, outbound))
    return merged


def _higher(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)

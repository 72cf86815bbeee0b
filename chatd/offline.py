"""Marking recipients who got a message with no socket open, for the email sweep.

One ``ZADD NX`` on the recipient's shard per such message, batched into one
pipeline per shard per turn (never a round trip on the message path). ``NX``
keeps the time of the first unseen message, so a burst of 100 messages still
means one email after the quiet period (the sweep lives in workers/email.py).
A failed mark is logged and counted: the email is a convenience, the messages
themselves are safe in MongoDB.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from core.keys import Keys
from core.redis import RedisShards

log = logging.getLogger(__name__)

MAX_REMEMBERED = 200_000


class OfflineMarks:
    def __init__(
        self,
        redis: RedisShards,
        keys: Keys,
        quiet_s: float,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.quiet_s = quiet_s
        self.on_error = on_error
        self._pending: dict[str, float] = {}
        # user -> until when a mark already sent stands (ZADD NX would change nothing):
        # in steady state a recipient costs one Redis command per quiet period, not
        # one per message (they may well be online on another node).
        self._marked_until: dict[str, float] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()

    def mark(self, user_id: str) -> None:
        now = time.time()
        if self._marked_until.get(user_id, 0.0) > now:
            return
        if len(self._marked_until) > MAX_REMEMBERED:
            self._marked_until.clear()
        # Until the sweep may have taken the mark: after the due time it re-marks.
        self._marked_until[user_id] = now + self.quiet_s
        self._pending.setdefault(user_id, now + self.quiet_s)
        self._ready.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending, {}
            by_shard: dict[int, dict[str, float]] = {}
            for user, due in batch.items():
                by_shard.setdefault(self.redis.index_for(user), {})[user] = due
            for shard, marks in by_shard.items():
                try:
                    await self.redis.clients[shard].zadd(self.keys.offline_due(), marks, nx=True)
                except (RedisError, OSError) as exc:
                    self.on_error()
                    log.warning("could not mark %d offline recipients: %s", len(marks), exc)

"""Users' committed stream heads in Redis: the one way they are written.

Each user's last committed positions (chatd/store.py) are kept on the user's
shard as a sorted set with the members ``i`` (inbound) and ``o`` (outbound),
written with ZADD GT, so a head only ever rises whichever process writes last,
and kept ``KEEP_S`` after its last write. chatd raises them after every commit
and reads them at hello (chatd/heads.py). An account's streams are empty when
it is created, so signup records both heads at 0 (``record_new_accounts``): a
new user's first hello then reads Redis instead of two store reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.exceptions import RedisError

from core.keys import Keys
from core.redis import RedisShards

log = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600
INBOUND, OUTBOUND = "i", "o"

# KEYS: heads keys; ARGV[1]: seconds to keep; then per key its inbound and outbound
# head, "" where that stream did not move. ZADD GT: a head only rises.
RAISE_HEADS = """
for i, key in ipairs(KEYS) do
  local inbound, outbound = ARGV[2 * i], ARGV[2 * i + 1]
  if inbound ~= '' then redis.call('ZADD', key, 'GT', inbound, 'i') end
  if outbound ~= '' then redis.call('ZADD', key, 'GT', outbound, 'o') end
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""

# user -> (inbound head, outbound head); None where the stream did not move.
Heads = dict[str, tuple[int | None, int | None]]


class HeadsWriter:
    def __init__(self, redis: RedisShards, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # EVALSHA, loaded on first use on each shard (redis-py's Script).
        self._raise = redis.primary.register_script(RAISE_HEADS)

    async def raise_heads(self, heads: Heads) -> None:
        """One script call a shard, whatever the batch holds (a pipeline of two commands
        a user cost chatd ~60 us of CPU a message to pack and parse). Raises Redis's
        errors."""
        for shard, users in self.redis.by_shard(heads).items():
            args: list[int | str] = [KEEP_S]
            for user in users:
                inbound, outbound = heads[user]
                args += ["" if inbound is None else inbound, "" if outbound is None else outbound]
            await self._raise(
                keys=[self.keys.stream_heads(user) for user in users],
                args=args,
                client=self.redis.clients[shard],
            )


async def record_new_accounts(redis: RedisShards, keys: Keys, user_ids: Iterable[str]) -> None:
    """New accounts' heads at 0 (nothing can have been committed to a user that did not
    exist). Best effort: a head missing from Redis is read from the store at hello."""
    try:
        await HeadsWriter(redis, keys).raise_heads({user: (0, 0) for user in user_ids})
    except (RedisError, OSError) as exc:
        log.warning("could not record new accounts' stream heads: %s", exc)

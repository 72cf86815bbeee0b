"""Redis-backed rate limits and login lockout, shared by restd and (later) chatd.

``RateLimiter`` is GCRA (the generic cell rate algorithm, as in redis-cell): a
limit of ``count`` per ``window_s`` lets a client spend all ``count`` at once and
then one more every ``window_s / count`` seconds. One key per (bucket, subject),
holding the "theoretical arrival time"; it expires by itself when idle, so
nothing needs cleaning up. The check and the update run in one Lua script,
atomic on the subject's shard, and use the Redis server clock so that several
processes agree on "now".

``Lockout`` counts failures of a subject (a login email) and, from a threshold
on, locks it for a time that doubles with each further failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.keys import Keys
from core.redis import RedisShards

_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
if new_tat - now > window then
  return {0, new_tat - window - now, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, 0, math.floor((window - (new_tat - now)) / interval)}
"""

_FAIL_LUA = """
local failures = redis.call('INCR', KEYS[1])
local window = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if failures == 1 then redis.call('EXPIRE', KEYS[1], window) end
if failures < threshold then return {failures, 0} end
local lock = math.floor(math.min(base * 2 ^ (failures - threshold), cap))
redis.call('SET', KEYS[2], failures, 'EX', lock)
-- The count must outlive the lock, or the next lock would start small again.
if redis.call('TTL', KEYS[1]) < lock + window then
  redis.call('EXPIRE', KEYS[1], lock + window)
end
return {failures, lock}
"""


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    window_s: float

    @property
    def interval_ms(self) -> int:
        return max(1, int(self.window_s * 1000 / self.count))

    @property
    def window_ms(self) -> int:
        return int(self.window_s * 1000)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: int  # whole seconds, at least 1 when refused (an HTTP Retry-After)
    remaining: int


def _whole_seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


class RateLimiter:
    def __init__(self, redis: RedisShards, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._script = _GCRA_LUA

    async def hit(self, bucket: str, subject: str, rate: Rate, cost: int = 1) -> Decision:
        """Spend ``cost`` from subject's budget in bucket; refused spends nothing."""
        client = self.redis.for_user(subject)
        allowed, retry_ms, remaining = await client.eval(
            self._script, 1, self.keys.rate(bucket, subject), rate.interval_ms, rate.window_ms, cost
        )
        if int(allowed):
            return Decision(True, 0, int(remaining))
        return Decision(False, _whole_seconds(int(retry_ms)), 0)

    async def reset(self, bucket: str, subject: str) -> None:
        await self.redis.for_user(subject).delete(self.keys.rate(bucket, subject))


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int
    base_s: int
    max_s: int
    window_s: int


class Lockout:
    """A lock that grows with repeated failures; success clears it."""

    def __init__(self, redis: RedisShards, keys: Keys, policy: LockoutPolicy) -> None:
        self.redis = redis
        self.keys = keys
        self.policy = policy

    async def locked_for_s(self, subject: str) -> int:
        """Seconds the subject stays locked; 0 when it is not locked."""
        ttl_ms = await self.redis.for_user(subject).pttl(self.keys.lockout(subject))
        return _whole_seconds(int(ttl_ms)) if int(ttl_ms) > 0 else 0

    async def record_failure(self, subject: str) -> int:
        """Count one failure; return the lock it started in seconds (0 for none)."""
        p = self.policy
        _failures, lock_s = await self.redis.for_user(subject).eval(
            _FAIL_LUA,
            2,
            self.keys.login_failures(subject),
            self.keys.lockout(subject),
            p.window_s,
            p.threshold,
            p.base_s,
            p.max_s,
        )
        return int(lock_s)

    async def clear(self, subject: str) -> None:
        await self.redis.for_user(subject).delete(
            self.keys.login_failures(subject), self.keys.lockout(subject)
        )

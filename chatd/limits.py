"""Per-user token buckets, kept in the node's memory (no store round trip per message).

A user's frames all arrive on the nodes holding their sockets; with one node
per user (the usual case behind a load balancer) the bucket is exact, and a
user split over k nodes gets at most k times the budget.
"""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_TRACKED_USERS = 200_000


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, stamp = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._state[key] = (tokens, now)
        self._state.move_to_end(key)
        if len(self._state) > MAX_TRACKED_USERS:
            self._state.popitem(last=False)
        return allowed

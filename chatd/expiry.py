"""Token expiry for every socket on one timer: a wheel of one-second buckets.

A socket sits in the bucket of the second its access token expires; renewing
the token (``auth``) moves it, closing takes it out. One periodic pass closes
the sockets in the buckets whose second has passed (plus the leeway), so the
cost of a pass is the sockets expiring, not the sockets open.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class Expiring(Protocol):
    token_expires_at_s: int


T = TypeVar("T", bound=Expiring)


class ExpiryWheel(Generic[T]):
    def __init__(self) -> None:
        self._buckets: dict[int, set[T]] = {}
        self._at: dict[T, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def track(self, item: T) -> None:
        """(Re)file item under its current expiry second; 0 means it never expires."""
        self.discard(item)
        second = item.token_expires_at_s
        if second:
            self._buckets.setdefault(second, set()).add(item)
            self._at[item] = second

    def discard(self, item: T) -> None:
        second = self._at.pop(item, None)
        if second is not None:
            bucket = self._buckets[second]
            bucket.discard(item)
            if not bucket:
                del self._buckets[second]

    def due(self, up_to_s: float) -> list[T]:
        """Remove and return every item that expires before ``up_to_s``."""
        seconds = [s for s in self._buckets if s < up_to_s]
        found: list[T] = []
        for second in sorted(seconds):
            for item in self._buckets.pop(second):
                del self._at[item]
                found.append(item)
        return found

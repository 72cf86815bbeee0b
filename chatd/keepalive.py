"""Websocket keepalive for every socket on one timer: a wheel of ping slots.

Tornado's own keepalive runs a task per socket that wakes twice per interval;
at 10,000 sockets that is 800 wakeups a second for nothing. Here each socket
sits in one of ``interval / tick`` slots, filled round-robin so they stay even,
and one loop visits a slot per tick: a socket that has not answered the ping
it got a round ago (with a pong or any frame) is closed, the others are pinged.
A silent peer is therefore closed between one and two intervals after it went
quiet, as with Tornado's own pings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from proto.errors import CloseCode

log = logging.getLogger(__name__)

TICK_S = 0.1


class Pinged(Protocol):
    heard: bool  # a pong or any frame since the last ping

    def ping(self) -> None: ...

    def disconnect(self, code: CloseCode, reason: str = "") -> None: ...


class KeepAlive:
    def __init__(self, interval_s: float) -> None:
        self.slots = max(1, round(interval_s / TICK_S))
        self.tick_s = interval_s / self.slots
        self._wheel: list[set[Pinged]] = [set() for _ in range(self.slots)]
        self._slot_of: dict[Pinged, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def add(self, item: Pinged) -> None:
        if item in self._slot_of:
            return
        slot = self._next
        self._next = (slot + 1) % self.slots
        self._wheel[slot].add(item)
        self._slot_of[item] = slot
        item.heard = True

    def discard(self, item: Pinged) -> None:
        slot = self._slot_of.pop(item, None)
        if slot is not None:
            self._wheel[slot].discard(item)

    def visit(self, slot: int) -> int:
        """Ping the slot's sockets, closing those that did not answer the last ping.
        Returns how many were closed."""
        timed_out = 0
        for item in list(self._wheel[slot % self.slots]):
            if not item.heard:
                self.discard(item)
                item.disconnect(CloseCode.GOING_AWAY, "ping timed out")
                timed_out += 1
                continue
            item.heard = False
            item.ping()
        return timed_out

    async def run(self) -> None:
        slot = 0
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.visit(slot)
            except Exception:  # the loop must survive anything
                log.exception("keepalive pass failed")
            slot += 1

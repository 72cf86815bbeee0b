"""Readiness: every dependency answers, or the failing ones are named."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]

CHECK_TIMEOUT_S = 2.0
# What a client of /readyz learns about a failing dependency. The exception text
# (host names, ports, driver internals) goes to the log only.
UNAVAILABLE = "unavailable"


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def failing(self) -> dict[str, str]:
        """Run every check concurrently; return {name: "unavailable"} for the ones that fail.

        Why each one failed is logged at warning, never returned: /readyz answers
        anyone who can reach the port.
        """

        async def run(name: str, check: Check) -> bool:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception as exc:  # any failure means not ready; the reason is logged
                log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
                return False
            return True

        names = list(self._checks)
        results = await asyncio.gather(*(run(n, self._checks[n]) for n in names))
        return {name: UNAVAILABLE for name, ok in zip(names, results, strict=True) if not ok}

"""Readiness: every dependency answers, or the failing ones are named."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[object]]

CHECK_TIMEOUT_S = 2.0


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def failing(self) -> dict[str, str]:
        """Run every check concurrently; return {name: reason} for the ones that fail."""

        async def run(check: Check) -> str | None:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception as exc:  # any failure means not ready; the reason is reported
                return f"{type(exc).__name__}: {exc}"[:200]
            return None

        names = list(self._checks)
        results = await asyncio.gather(*(run(self._checks[n]) for n in names))
        return {name: reason for name, reason in zip(names, results, strict=True) if reason}

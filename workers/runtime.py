"""One asyncio runtime per worker process for tasks that reuse restd's async domain code.

Celery tasks are synchronous; payments reconciliation and feed precompute call
async code (PyMongo's async API, redis.asyncio). Each worker process builds one
event loop and one set of stores on its first such task, keeps them on the
Celery app object (not in a module global), and rebuilds them after a fork.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from celery import Celery

from core.runtime import Stores, open_stores
from core.settings import Settings

T = TypeVar("T")


class AsyncRuntime:
    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.stores: Stores = self.loop.run_until_complete(self._open(settings))

    @staticmethod
    async def _open(settings: Settings) -> Stores:
        return open_stores(settings)  # made inside the loop that will use them

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(self.stores.close())
        self.loop.close()

    @classmethod
    def of(cls, app: Celery) -> Self:
        """This process's runtime of this kind, built on first use (and after a fork)."""
        attr = f"devconnect_runtime_{cls.__name__}"
        runtime: Self | None = getattr(app, attr, None)
        if runtime is None or runtime.pid != os.getpid():
            runtime = cls(app.devconnect_settings)
            setattr(app, attr, runtime)
        return runtime

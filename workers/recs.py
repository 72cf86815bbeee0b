"""Feed precompute tasks: the nightly batch (beat) and one user after their connections change.

Both run the feed's own async code (restd/feed) on a loop and stores owned
by the worker process, built on first use and again after a fork, like
workers/payments.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Celery, Task, shared_task

from core.runtime import Stores, open_stores
from core.settings import Settings
from restd.feed.precompute import precompute_with, recompute_user

log = logging.getLogger(__name__)

T = TypeVar("T")
RUNTIME_ATTR = "devconnect_recs_runtime"


class RecsRuntime:
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

    @classmethod
    def of(cls, app: Celery) -> RecsRuntime:
        runtime: RecsRuntime | None = getattr(app, RUNTIME_ATTR, None)
        if runtime is None or runtime.pid != os.getpid():
            runtime = cls(app.devconnect_settings)
            setattr(app, RUNTIME_ATTR, runtime)
        return runtime


# The nightly batch may outlast the default 120 s task limit on a large user base.
PRECOMPUTE_TIME_LIMIT_S = 3 * 3600


@shared_task(
    name="workers.recs.precompute_active",
    bind=True,
    time_limit=PRECOMPUTE_TIME_LIMIT_S,
    soft_time_limit=PRECOMPUTE_TIME_LIMIT_S - 60,
)
def precompute_active(self: Task[Any, Any], max_users: int | None = None) -> int:
    runtime = RecsRuntime.of(self.app)
    s = runtime.settings
    started = time.monotonic()
    done = runtime.run(
        precompute_with(
            runtime.stores, s.feed_precompute_batch, s.feed_active_days, max_users, log.info
        )
    )
    log.info("recs precompute: %d users in %.1fs", done, time.monotonic() - started)
    return done


@shared_task(name="workers.recs.recompute_user", bind=True)
def recompute(self: Task[Any, Any], user_id: str) -> str:
    runtime = RecsRuntime.of(self.app)
    return runtime.run(recompute_user(runtime.stores, user_id))

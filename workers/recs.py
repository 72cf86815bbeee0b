"""Feed precompute tasks: the nightly batch (beat) and one user after their connections change.

Both run the feed's own async code (domain/feed) on a loop and stores owned
by the worker process, built on first use and again after a fork, like
workers/payments.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task

from core.tasks import RECS_PRECOMPUTE_ACTIVE, RECS_RECOMPUTE_USER
from domain.feed.precompute import precompute_with, recompute_user
from workers.runtime import AsyncRuntime

log = logging.getLogger(__name__)


class RecsRuntime(AsyncRuntime):
    """The feed precompute's stores in this worker process."""


# The nightly batch may outlast the default 120 s task limit on a large user base.
PRECOMPUTE_TIME_LIMIT_S = 3 * 3600


@shared_task(
    name=RECS_PRECOMPUTE_ACTIVE,
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


@shared_task(name=RECS_RECOMPUTE_USER, bind=True)
def recompute(self: Task[Any, Any], user_id: str) -> str:
    runtime = RecsRuntime.of(self.app)
    return runtime.run(recompute_user(runtime.stores, user_id))

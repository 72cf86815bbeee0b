"""Feed tasks on the ``recs`` queue: the nightly precompute (beat), one user's recompute
after their connections change, and the nightly training of the learned ranker (beat).

All run the feed's own async code (domain/feed) on a loop and stores owned
by the worker process, built on first use and again after a fork, like
workers/payments.py. The runtime keeps one ``FeedService``, so a user's
recompute reuses the loaded model instead of reading it again per task.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task

from core.settings import Settings
from core.tasks import RECS_PRECOMPUTE_ACTIVE, RECS_RECOMPUTE_USER, RECS_TRAIN_MODEL
from domain.feed.precompute import precompute_with
from domain.feed.service import FeedService
from domain.feed.training import train_ranker
from workers.runtime import AsyncRuntime

log = logging.getLogger(__name__)


class RecsRuntime(AsyncRuntime):
    """The feed's stores and service in this worker process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.feed = FeedService(self.stores)


# The nightly batch may outlast the default 120 s task limit on a large user base.
PRECOMPUTE_TIME_LIMIT_S = 3 * 3600
# Reading up to feed_training_max_impressions and fitting 200 rounds takes minutes,
# not hours; kept below the broker's visibility timeout (1 h by default).
TRAIN_TIME_LIMIT_S = 45 * 60


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
    return runtime.run(runtime.feed.refresh(user_id))


@shared_task(
    name=RECS_TRAIN_MODEL,
    bind=True,
    time_limit=TRAIN_TIME_LIMIT_S,
    soft_time_limit=TRAIN_TIME_LIMIT_S - 60,
)
def train_model(self: Task[Any, Any]) -> dict[str, Any]:
    """Train on the deployment's feed events; promote the model only when it is better
    (domain/feed/training.py). Returns the outcome, reason, versions and metrics; the
    worker's exporter counts the outcome from it (workers/metrics.py)."""
    runtime = RecsRuntime.of(self.app)
    result = runtime.run(train_ranker(runtime.stores))
    return result.as_dict()

"""Queuing Celery tasks by name from the services, without importing the workers.

restd publishes after its domain writes (STYLE 14): the write is what matters,
so a broker that is down or slow is logged and counted as a failed publish and
never fails the request. The worker tier and the publishers share the one
routing table below, so a task reaches its queue whoever sends it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery

from core.settings import Settings

log = logging.getLogger(__name__)

QUEUES = ("default", "email", "recs", "payments")
TASK_ROUTES: dict[str, dict[str, str]] = {
    "workers.email.*": {"queue": "email"},
    "workers.recs.*": {"queue": "recs"},
    "workers.payments.*": {"queue": "payments"},
}

# Every task name, in one place: the services send by these names, the workers
# register their tasks under them, beat schedules them (code in workers/).
EMAIL_CONNECTION_REQUEST = "workers.email.connection_request"  # (request id)
EMAIL_CONNECTION_ACCEPTED = "workers.email.connection_accepted"  # (request id)
EMAIL_PAYMENT_RECEIPT = "workers.email.payment_receipt"  # (user id, order id)
EMAIL_SWEEP_OFFLINE = "workers.email.sweep_offline"  # beat
EMAIL_OFFLINE_MESSAGES = "workers.email.offline_messages"  # (user id)
RECS_RECOMPUTE_USER = "workers.recs.recompute_user"  # (user id)
RECS_PRECOMPUTE_ACTIVE = "workers.recs.precompute_active"  # beat
RECS_TRAIN_MODEL = "workers.recs.train_model"  # beat
PAYMENTS_RECONCILE = "workers.payments.reconcile"  # beat
PING = "workers.ping"

# A publish waits at most this long for the broker before giving up: the HTTP
# request that triggered it is waiting too.
PUBLISH_CONNECT_TIMEOUT_S = 2.0
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2}


def publisher_app(settings: Settings) -> Celery:
    """A Celery app that only sends (no result backend, no task modules)."""
    app = Celery("devconnect-publisher", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_routes=TASK_ROUTES,
        task_default_queue="default",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_timeout=PUBLISH_CONNECT_TIMEOUT_S,
        broker_connection_retry=False,
        broker_transport_options={
            "socket_timeout": PUBLISH_CONNECT_TIMEOUT_S,
            "socket_connect_timeout": PUBLISH_CONNECT_TIMEOUT_S,
            "visibility_timeout": settings.celery_visibility_timeout_s,
        },
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
    )
    return app


class TaskSender:
    """Best-effort ``send_task`` for asyncio services; built once per service context."""

    def __init__(self, settings: Settings) -> None:
        self.app = publisher_app(settings)
        self.failures = 0

    async def send(self, name: str, *args: Any) -> bool:
        """Queue ``name(*args)``; False (logged) when the broker did not take it."""
        try:
            # kombu's publish is blocking socket I/O: keep it off the event loop.
            await asyncio.to_thread(self.app.send_task, name, args=list(args))
        except Exception as exc:  # any broker or serialisation failure: log, never raise
            self.failures += 1
            log.warning("could not queue task %s: %s", name, exc, extra={"task": name})
            return False
        return True

    def close(self) -> None:
        self.app.close()

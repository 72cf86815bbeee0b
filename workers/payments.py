"""Payments in the worker tier: ``workers.payments.reconcile``, run by Celery beat.

Every ``payments_reconcile_interval_s`` it settles the PENDING orders whose next
check is due, through the same ``domain.payments`` domain code as the webhook
(``reconcile.reconcile_due`` → ``PaymentsService.transition``), so the two
racing on one order grant the membership once.

Stores are injected the arq way (STYLE 6): each worker process builds one
``PaymentsRuntime`` (its event loop, Mongo and Redis clients, provider client
with its token cache) on its first payments task, keeps it on the Celery app
object, and reuses it; nothing is built at import time. A fork gets its own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task

from core.logs import request_id_var
from core.metrics import CollectorRegistry
from core.settings import Settings
from core.tasks import PAYMENTS_RECONCILE, TaskSender
from domain.payments.metrics import PaymentMetrics
from domain.payments.reconcile import reconcile_due
from domain.payments.service import PaymentsService
from workers.runtime import AsyncRuntime

log = logging.getLogger(__name__)


class PaymentsRuntime(AsyncRuntime):
    """The reconciler's stores and payments service in this worker process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.service = PaymentsService(
            settings,
            self.stores.db,
            self.stores.redis,
            self.stores.keys,
            PaymentMetrics(CollectorRegistry()),
            tasks=TaskSender(settings),
        )


async def _reconcile(service: PaymentsService, task_id: str) -> dict[str, int]:
    request_id_var.set(f"reconcile:{task_id}")
    return await reconcile_due(service)


@shared_task(name=PAYMENTS_RECONCILE, bind=True)
def reconcile(self: Task[Any, Any]) -> dict[str, int]:
    started = time.monotonic()
    runtime = PaymentsRuntime.of(self.app)
    counts = runtime.run(_reconcile(runtime.service, str(self.request.id)))
    log.info(
        "payments reconcile: %s in %.0f ms",
        " ".join(f"{k}={v}" for k, v in counts.items()),
        (time.monotonic() - started) * 1000,
        extra={"counts": counts},
    )
    return counts

"""Reconciliation: settle every order the webhook did not (workers/payments.py runs it).

PhonePe's webhook is best effort, so a PENDING order is checked with the status
API once ``payments_reconcile_delay_s`` has passed since its creation, then with
doubling gaps (capped), until the provider settles it, or until its expiry plus
a grace has passed with the provider answering that it is still unpaid, when it
becomes EXPIRED. Each check is claimed with a conditional update of
``nextCheckAtMs``, so runs in parallel never check one order twice; the
settling goes through ``PaymentsService.transition``, so a webhook racing the
reconciler still grants once.
"""

from __future__ import annotations

import logging
import time

from pymongo import ReturnDocument

from core.mongo import Doc
from domain.payments.phonepe import ProviderError, ProviderRefused
from domain.payments.service import COMPLETED, EXPIRED, PENDING, PaymentsService

log = logging.getLogger(__name__)


def _next_check_gap_ms(service: PaymentsService, checks: int) -> int:
    s = service.settings
    gap_s = min(s.payments_reconcile_backoff_s * 2**checks, s.payments_reconcile_backoff_max_s)
    return int(gap_s * 1000)


async def reconcile_due(service: PaymentsService) -> dict[str, int]:
    """Check every PENDING order whose next check is due; settle or expire it.
    Also finishes grants a crash left pending. Returns counts for the summary line."""
    counts = dict.fromkeys(
        ("due", "completed", "failed", "expired", "pending", "unreachable", "lost", "grants"), 0
    )
    now_ms = int(time.time() * 1000)
    grace_ms = int(service.settings.payments_expiry_grace_s * 1000)
    batch = service.settings.payments_reconcile_batch
    due = await service.payments.find(
        {"status": PENDING, "nextCheckAtMs": {"$lte": now_ms}}
    ).to_list(batch)
    for order in due:
        counts["due"] += 1
        # Claim this check (and book the next one) so parallel runs do not repeat it.
        claimed = await service.payments.find_one_and_update(
            {"_id": order["_id"], "status": PENDING, "nextCheckAtMs": order["nextCheckAtMs"]},
            {
                "$set": {"nextCheckAtMs": now_ms + _next_check_gap_ms(service, order["checks"])},
                "$inc": {"checks": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if claimed is None:
            counts["lost"] += 1
            continue
        answered = True
        settled: Doc = claimed
        try:
            settled = await service.check_with_provider(claimed, "reconcile")
        except ProviderRefused as exc:
            # e.g. the provider never heard of it: the create call never reached it.
            log.info("reconcile %s: %s", claimed["merchantOrderId"], exc)
        except ProviderError as exc:
            answered = False
            log.warning("reconcile %s: provider unreachable: %s", claimed["merchantOrderId"], exc)
        if settled["status"] == PENDING and answered and now_ms > claimed["expireAtMs"] + grace_ms:
            expired = await service.transition(
                claimed, EXPIRED, {"reason": "expired unpaid", "at": now_ms}, "reconcile"
            )
            settled = expired or settled
        if not answered:
            counts["unreachable"] += 1
        else:
            counts[settled["status"].lower()] += 1
    for order in await service.payments.find({"grantPending": True}).to_list(batch):
        if order["status"] == COMPLETED and await service.grant(order):
            counts["grants"] += 1
    return counts

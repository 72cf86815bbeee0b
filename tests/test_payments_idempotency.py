"""Exactly once: the same webhook 100 times (some concurrently), and the webhook
racing the reconciler in a real worker and the owner's status check."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId

from core.mongo import USERS
from domain.dates import as_utc
from tests.harness import Services, celery_worker
from tests.payments_harness import (
    Lines,
    auth_header,
    buy,
    completed_event,
    metric,
    payment_settings,
    running_simulator,
    stored,
)
from tests.restd_harness import Api, User, running_restd
from workers.app import make_celery


async def user_doc(api: Api, user: User) -> dict[str, Any]:
    doc = await api.stores.db[USERS].find_one({"_id": ObjectId(user.id)})
    assert doc is not None
    return doc


async def test_the_same_webhook_100_times_grants_one_membership_extension(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with (
        running_simulator(settings, tmp_path / "sim.log") as sim,
        running_restd(settings) as api,
    ):
        alice = await api.signup("Alice")
        order = await buy(api, alice)
        # 40 concurrent deliveries from the provider when the user pays...
        await sim.configure(copies=40)
        await sim.pay(order["paymentUrl"], webhook="duplicate")
        assert (await sim.stats())["webhooks.sent.200"] == 40
        # ...then 30 more at once and 30 one after another: a replaying attacker or proxy.
        event = completed_event(settings, await stored(api, order["orderId"]))
        hook = api.client(**auth_header(settings))
        together = await asyncio.gather(
            *(hook.post("/api/payments/webhook", json=event) for _ in range(30))
        )
        one_by_one = [await hook.post("/api/payments/webhook", json=event) for _ in range(30)]
        for resp in [*together, *one_by_one]:
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"result": "duplicate"}

        doc = await stored(api, order["orderId"])
        assert doc["status"] == "COMPLETED"
        user = await user_doc(api, alice)
        assert user["membershipVersion"] == 1
        assert user["membership"]["orders"] == [order["orderId"]]
        end, paid = as_utc(user["membership"]["expiresAt"]), as_utc(doc["processedAt"])
        assert end is not None and paid is not None
        assert timedelta(days=30) <= end - paid < timedelta(days=30, minutes=1)

        text = await api.metrics()
        assert metric(text, "payments_webhooks_total", result="applied") == 1
        assert metric(text, "payments_webhooks_total", result="duplicate") == 99
        assert metric(text, "payments_transitions_total", state="COMPLETED", source="webhook") == 1
        assert metric(text, "payments_membership_grants_total") == 1


async def test_webhooks_racing_the_reconciler_and_status_checks_grant_once(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    lines = Lines()
    logger = logging.getLogger("domain.payments")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    celery = make_celery(settings)
    try:
        async with (
            running_simulator(settings, tmp_path / "sim.log") as sim,
            running_restd(settings) as api,
        ):
            users = [await api.signup(f"Payer {i}") for i in range(6)]
            orders = []
            for user in users:
                order = await buy(api, user)
                await sim.pay(order["paymentUrl"], webhook="lost")
                orders.append(await stored(api, order["orderId"]))
            hook = api.client(**auth_header(settings))

            racing, late = orders[:3], orders[3:]
            with celery_worker(settings, tmp_path / "worker.log"):
                # Two reconcile runs at once in the worker's two processes...
                tasks = [celery.send_task("workers.payments.reconcile") for _ in range(2)]
                # ...while three orders' webhooks arrive three times each and their owners poll.
                webhooks = [
                    hook.post("/api/payments/webhook", json=completed_event(settings, order))
                    for order in racing
                    for _ in range(3)
                ]
                polls = [
                    user.http.get(f"/api/payments/{order['merchantOrderId']}")
                    for user, order in zip(users, racing, strict=False)
                ]
                answers = await asyncio.gather(*webhooks, *polls)
                counts = [await asyncio.to_thread(t.get, timeout=60) for t in tasks]
            # The other three were settled by the reconciler alone; their webhooks come late.
            answers += await asyncio.gather(
                *(
                    hook.post("/api/payments/webhook", json=completed_event(settings, order))
                    for order in late
                    for _ in range(3)
                )
            )
            for resp in answers:
                assert resp.status_code == 200, resp.text
            assert sum(c["due"] for c in counts) >= len(late), counts
            for order in late:
                assert (await stored(api, order["merchantOrderId"]))["settledBy"] == "reconcile"

            for user, order in zip(users, orders, strict=True):
                doc = await stored(api, order["merchantOrderId"])
                assert doc["status"] == "COMPLETED"
                assert doc["settledBy"] in {"webhook", "reconcile", "status"}
                assert (await user_doc(api, user))["membershipVersion"] == 1
                me = (await user.http.get("/api/me")).json()
                assert me["membership"]["active"] is True
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)

    in_restd = [line["orderId"] for line in lines.lines if "PENDING -> COMPLETED" in line["msg"]]
    worker_log = (tmp_path / "worker.log").read_text()
    for order in orders:
        order_id = order["merchantOrderId"]
        in_worker = worker_log.count(f"payment {order_id}: PENDING -> COMPLETED")
        assert in_restd.count(order_id) + in_worker == 1, order_id

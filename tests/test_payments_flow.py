"""End to end: restd, Mongo, Redis, the PhonePe simulator and a real Celery worker.

create → pay page → signed webhook → membership on /api/me, a badge on the
public profile and the higher connection-request quota; a failed payment grants
nothing; a lost webhook is settled by ``workers.payments.reconcile`` run by the
worker; an abandoned order expires.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson import ObjectId

from core.mongo import USERS
from domain.dates import as_utc
from tests.harness import Services, celery_worker
from tests.payments_harness import Lines, buy, metric, payment_settings, running_simulator, stored
from tests.restd_harness import User, running_restd
from workers.app import make_celery


async def ask(a: User, b: User) -> int:
    resp = await a.http.post("/api/connection-requests", json={"toUserId": b.id})
    return resp.status_code


def close_to(value: str | None, expected: datetime) -> bool:
    assert value is not None
    return abs(datetime.fromisoformat(value) - expected) < timedelta(minutes=2)


async def test_pay_grants_membership_badge_and_quota_then_paying_again_extends(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(
        services, connection_requests_per_day_free=2, connection_requests_per_day_pro=5
    )
    lines = Lines()
    logger = logging.getLogger("domain.payments")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    try:
        async with (
            running_simulator(settings, tmp_path / "sim.log") as sim,
            running_restd(settings) as api,
        ):
            alice = await api.signup("Alice")
            others = [await api.signup(f"Other {i}") for i in range(5)]
            assert [await ask(alice, o) for o in others[:3]] == [201, 201, 429]  # free: 2 a day

            plans = (await api.client().get("/api/payments/plans")).json()["items"]
            assert {p["id"]: p["amount"] for p in plans} == {
                "pro-monthly": 29_900,
                "pro-yearly": 299_900,
            }
            me = (await alice.http.get("/api/me")).json()
            assert me["membership"] is None and me["badges"] == []

            order = await buy(api, alice)
            view = (await alice.http.get(f"/api/payments/{order['orderId']}")).json()
            assert view["status"] == "PENDING" and view["paymentUrl"] == order["paymentUrl"]

            await sim.pay(order["paymentUrl"])  # the webhook is delivered before this returns
            paid_at = datetime.now(UTC)
            view = (await alice.http.get(f"/api/payments/{order['orderId']}")).json()
            assert view["status"] == "COMPLETED" and view["paymentUrl"] is None
            doc = await stored(api, order["orderId"])
            assert doc["settledBy"] == "webhook"
            assert doc["providerPayload"]["payload"]["state"] == "COMPLETED"
            assert doc["providerOrderId"].startswith("OMO")

            me = (await alice.http.get("/api/me")).json()
            membership = me["membership"]
            assert membership["tier"] == "pro" and membership["planId"] == "pro-monthly"
            assert membership["active"] is True
            assert close_to(membership["expiresAt"], paid_at + timedelta(days=30))
            seen_by_bob = (await others[0].http.get(f"/api/users/{alice.id}")).json()
            assert seen_by_bob["badges"] == ["pro"]
            assert "membership" not in seen_by_bob

            # The pro budget applies from the payment on: 5 a day.
            assert [await ask(alice, o) for o in others[2:5]] == [201, 201, 201]

            # Paying again extends from the current end, not from now.
            first_end = datetime.fromisoformat(membership["expiresAt"])
            second = await buy(api, alice, "pro-yearly")
            await sim.pay(second["paymentUrl"])
            membership = (await alice.http.get("/api/me")).json()["membership"]
            assert membership["planId"] == "pro-yearly"
            assert datetime.fromisoformat(membership["expiresAt"]) == first_end + timedelta(
                days=365
            )

            text = await api.metrics()
            assert metric(text, "payments_orders_total", outcome="created") == 2
            assert metric(text, "payments_orders_total", outcome="completed") == 2
            assert metric(text, "payments_webhooks_total", result="applied") == 2
            assert metric(text, "payments_membership_grants_total") == 2
            assert metric(text, "payments_success_ratio") == 1.0
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)

    transitions = [line for line in lines.lines if "PENDING -> COMPLETED" in line["msg"]]
    assert len(transitions) == 2
    for line in transitions:
        assert line["requestId"] and line["orderId"].startswith("DC")
        assert line["source"] == "webhook"


async def test_a_failed_payment_grants_nothing(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with (
        running_simulator(settings, tmp_path / "sim.log") as sim,
        running_restd(settings) as api,
    ):
        alice = await api.signup("Alice")
        order = await buy(api, alice)
        await sim.pay(order["paymentUrl"], action="fail")
        view = (await alice.http.get(f"/api/payments/{order['orderId']}")).json()
        assert view["status"] == "FAILED"
        assert (await alice.http.get("/api/me")).json()["membership"] is None
        user = await api.stores.db[USERS].find_one({"_id": ObjectId(alice.id)})
        assert user is not None and "membershipVersion" not in user
        text = await api.metrics()
        assert metric(text, "payments_orders_total", outcome="failed") == 1
        assert metric(text, "payments_success_ratio") == 0.0


async def test_a_lost_webhook_is_settled_by_the_reconcile_task_in_the_worker(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    # The task, its queue and its beat schedule, as the worker and beat load them.
    celery = make_celery(settings)
    schedule = celery.conf.beat_schedule["payments-reconcile"]
    assert schedule["task"] == "workers.payments.reconcile"
    async with (
        running_simulator(settings, tmp_path / "sim.log") as sim,
        running_restd(settings) as api,
    ):
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        paid = await buy(api, alice)
        await sim.pay(paid["paymentUrl"], webhook="lost")
        abandoned = await buy(api, bob)
        await sim.pay(abandoned["paymentUrl"], action="pending")
        await sim.expire(abandoned["orderId"])
        assert (await sim.stats())["webhooks.lost"] == 1
        assert (await stored(api, paid["orderId"]))["status"] == "PENDING"
        assert (await alice.http.get("/api/me")).json()["membership"] is None

        with celery_worker(settings, tmp_path / "worker.log"):
            result = celery.send_task("workers.payments.reconcile")
            counts = result.get(timeout=60)
        assert counts["completed"] == 1 and counts["expired"] == 1, counts

        doc = await stored(api, paid["orderId"])
        assert doc["status"] == "COMPLETED" and doc["settledBy"] == "reconcile"
        assert not doc["grantPending"]
        membership = (await alice.http.get("/api/me")).json()["membership"]
        assert membership["active"] is True
        assert as_utc(doc["membershipUntil"]) is not None
        expired = await stored(api, abandoned["orderId"])
        assert expired["status"] == "EXPIRED"
        assert (await bob.http.get("/api/me")).json()["membership"] is None
        worker_log = (tmp_path / "worker.log").read_text()
        assert f"payment {paid['orderId']}: PENDING -> COMPLETED by reconcile" in worker_log
        assert "payments reconcile: due=2 completed=1" in worker_log

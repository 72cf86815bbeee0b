"""SMTP trouble with a real worker: refused first attempts are retried and the mail goes
out once; a server that always refuses ends in a dead letter and a counted failure,
and the worker goes on serving other tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from core.embedded import free_port
from core.mongo import DEAD_LETTERS, EMAIL_NOTIFICATIONS, PAYMENTS, USERS, Doc
from core.settings import Settings
from core.tasks import EMAIL_PAYMENT_RECEIPT
from tests.harness import Services
from tests.restd_harness import running_restd
from tests.workers_harness import (
    WAIT_S,
    Mailbox,
    await_until,
    parts,
    scrape,
    sink,
    wait_until,
    worker,
    worker_settings,
)
from workers.app import make_celery

FAST_RETRIES = {"email_retry_backoff_s": 0.2, "email_retry_backoff_max_s": 1.0}


@contextmanager
def database(settings: Settings) -> Iterator[Database[Doc]]:
    client: MongoClient[Doc] = MongoClient(settings.mongo_url, tz_aware=True)
    try:
        yield client[settings.mongo_db]
    finally:
        client.drop_database(settings.mongo_db)
        client.close()


def paid_order(db: Database[Doc], name: str = "Payer") -> tuple[str, str]:
    """A user and a COMPLETED order of theirs, as domain/payments leaves them."""
    user = ObjectId()
    db[USERS].insert_one({"_id": user, "name": name, "email": f"{user}@example.test"})
    order_id = f"DC{ObjectId()}"
    db[PAYMENTS].insert_one(
        {
            "merchantOrderId": order_id,
            "providerOrderId": f"OMO{order_id}",
            "userId": str(user),
            "planId": "pro-monthly",
            "amount": 29_900,
            "currency": "INR",
            "status": "COMPLETED",
            "processedAt": datetime.now(UTC),
        }
    )
    return str(user), order_id


async def test_refused_first_attempts_are_retried_and_each_mail_sent_once(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    with sink(box.dir, tmp_path / "smtp.log", refuse_first=2) as smtp:
        settings = worker_settings(services, smtp_port=smtp.port, **FAST_RETRIES)
        with worker(settings, tmp_path / "worker.log"):
            async with running_restd(settings) as api:
                a, b = await api.signup("Ada"), await api.signup("Ben")
                sent = await a.http.post(
                    "/api/connection-requests", json={"toUserId": b.id, "message": "Hi <Ben>"}
                )
                assert sent.status_code == 201, sent.text
                request_id = sent.json()["id"]
                # Refused twice (451), accepted the third time.
                (mail,) = await await_until(lambda: box.to(b.email), "the request mail")
                assert mail["Subject"] == "Ada wants to connect with you"
                text, html = parts(mail)
                assert "Hi <Ben>" in text and "Hi &lt;Ben&gt;" in html
                notes = api.stores.db[EMAIL_NOTIFICATIONS]
                note = await notes.find_one({"_id": f"connection-request:{request_id}"})
                assert note is not None and note["state"] == "sent"
                assert note["attempts"] == 3 and note["lastError"].startswith("451")

                answer = await b.http.patch(
                    f"/api/connection-requests/{request_id}", json={"status": "accepted"}
                )
                assert answer.status_code == 200
                (accepted,) = await await_until(lambda: box.to(a.email), "the accepted mail")
                assert accepted["Subject"] == "Ben accepted your connection request"

            # A receipt queued twice (the payments code retried its hook): one mail.
            with database(settings) as db:
                user, order_id = paid_order(db)
                app = make_celery(settings)
                first = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
                assert first.get(timeout=WAIT_S)["outcome"] == "sent"
                second = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
                assert second.get(timeout=WAIT_S)["outcome"] == "duplicate"
                (receipt,) = box.to(f"{user}@example.test")
                assert receipt["Subject"] == "Your DevConnect receipt"
                assert "₹299.00" in parts(receipt)[0] and order_id in parts(receipt)[0]
                app.close()
        assert len(box.all()) == 3  # request, accepted, receipt: each exactly once


async def test_always_refused_mail_is_dead_lettered_counted_and_the_worker_carries_on(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    with sink(box.dir, tmp_path / "smtp.log", refuse_always=True) as smtp:
        settings = worker_settings(
            services,
            smtp_port=smtp.port,
            email_max_retries=2,
            worker_metrics_port=free_port(),
            **FAST_RETRIES,
        )
        metrics_url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        with worker(settings, tmp_path / "worker.log"), database(settings) as db:
            app = make_celery(settings)
            user, order_id = paid_order(db)
            result = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
            result.get(timeout=WAIT_S, propagate=False)
            assert result.failed()
            assert type(result.result).__name__ == "EmailUndeliverable"
            assert "451" in str(result.result)

            key = f"payment-receipt:{order_id}"
            dead = db[DEAD_LETTERS].find_one({"_id": key})
            assert dead is not None
            assert dead["reason"].startswith("451") and dead["kind"] == "payments"
            assert dead["attempts"] == 3 and dead["userId"] == user
            assert db[EMAIL_NOTIFICATIONS].find_one({"_id": key})["state"] == "failed"  # type: ignore[index]

            task = "workers.email.payment_receipt"
            samples = wait_until(
                lambda: (
                    (s := scrape(metrics_url))
                    and s.get(("worker_email_failures_total", (("kind", "payments"),)))
                    and s
                ),
                "the failure counter",
            )
            assert samples[("worker_email_failures_total", (("kind", "payments"),))] == 1
            retries = (("outcome", "retry"), ("task", task))
            assert samples[("worker_tasks_total", retries)] == 2
            assert samples[("worker_tasks_total", (("outcome", "failure"), ("task", task)))] == 1

            # Never retried again: the same event later is a no-op.
            again = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
            assert again.get(timeout=WAIT_S) == {
                "kind": "payments",
                "userId": user,
                "outcome": "duplicate",
                "state": "failed",
            }
            # And the worker still serves: the email queue and the default queue.
            quiet = app.send_task("workers.email.offline_messages", args=[user])
            assert quiet.get(timeout=WAIT_S)["outcome"] == "skipped_no_unread"
            assert app.send_task("workers.ping").get(timeout=WAIT_S) == "pong"
            assert db[DEAD_LETTERS].count_documents({}) == 1
            app.close()
    assert box.all() == []

"""A worker killed (SIGKILL, whole process group) in the middle of sending a mail: the
broker hands the task out again after its visibility timeout, a new worker takes the
abandoned claim over, and exactly one mail is accepted."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from core.embedded import free_port
from core.mongo import EMAIL_NOTIFICATIONS
from core.tasks import EMAIL_PAYMENT_RECEIPT
from tests.harness import Services
from tests.test_workers_email_retry import database, paid_order
from tests.workers_harness import WAIT_S, kill_group, wait_until, worker, worker_settings
from workers.app import make_celery
from workers.mailer import OutgoingMail

HOLD_S = 30.0  # the first delivery is never answered; the worker dies long before


class GateHandler:
    """An SMTP server that holds the first mail's DATA unanswered and accepts the rest."""

    def __init__(self) -> None:
        self.first_arrived = threading.Event()
        self.accepted: list[bytes] = []
        self._held = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self._held:
            self._held = True
            self.first_arrived.set()
            await asyncio.sleep(HOLD_S)  # no reply: the mail is not accepted
            return "421 4.3.0 gave up waiting"
        self.accepted.append(envelope.original_content or envelope.content)
        return "250 OK"


def test_killed_mid_send_is_redelivered_and_sent_once(services: Services, tmp_path: Path) -> None:
    gate = GateHandler()
    controller = Controller(gate, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = worker_settings(
            services,
            smtp_port=controller.port,
            smtp_timeout_s=HOLD_S * 2,
            # Short on purpose: the dead worker's task comes back after 2 s and its
            # claim is free after 1 s (production: an hour and two minutes).
            celery_visibility_timeout_s=2,
            celery_restore_interval_s=1,
            email_send_lease_s=1.0,
        )
        app = make_celery(settings)
        with database(settings) as db:
            user, order_id = paid_order(db)
            key = f"payment-receipt:{order_id}"
            with worker(settings, tmp_path / "worker1.log", name="w1") as first:
                result = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
                assert gate.first_arrived.wait(WAIT_S), "the first attempt never reached SMTP"
                kill_group(first)
            note = db[EMAIL_NOTIFICATIONS].find_one({"_id": key})
            assert note is not None and note["state"] == "sending"  # died mid-send
            assert gate.accepted == []

            with worker(settings, tmp_path / "worker2.log", name="w2"):
                outcome = result.get(timeout=WAIT_S)  # the same task, run again
                assert outcome["outcome"] == "sent"
                note = wait_until(
                    lambda: (
                        (n := db[EMAIL_NOTIFICATIONS].find_one({"_id": key}))
                        and n["state"] == "sent"
                        and n
                    ),
                    "the claim to be recorded as sent",
                )
                assert note["attempts"] == 2  # claimed by the dead worker, then taken over
                assert len(gate.accepted) == 1
                expected_id = OutgoingMail("", "", "", {}, "", key).message_id
                assert f"Message-ID: {expected_id}".encode() in gate.accepted[0]
                # The event again, later: still one mail.
                again = app.send_task(EMAIL_PAYMENT_RECEIPT, args=[user, order_id])
                assert again.get(timeout=WAIT_S)["outcome"] == "duplicate"
                assert len(gate.accepted) == 1
        app.close()
    finally:
        controller.stop()

"""A completed payment mails one receipt, through restd, the real worker and the SMTP sink."""

from __future__ import annotations

import asyncio
import email
from email.message import Message
from pathlib import Path

from tests.harness import Services, celery_worker
from tests.payments_harness import buy, payment_settings, running_simulator
from tests.restd_harness import running_restd


def _mails_to(mail_dir: Path, address: str) -> list[Message]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if address in (message["To"] or ""):
            found.append(message)
    return found


async def test_a_completed_payment_mails_one_receipt(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    with celery_worker(settings, tmp_path / "worker.log"):
        async with (
            running_simulator(settings, tmp_path / "sim.log") as sim,
            running_restd(settings) as api,
        ):
            payer = await api.signup("Payer")
            order = await buy(api, payer)
            await sim.pay(order["paymentUrl"])
            for _ in range(150):
                if _mails_to(services.mail_dir, payer.email):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a second receipt, if any, would have arrived by now
            receipts = _mails_to(services.mail_dir, payer.email)
            assert len(receipts) == 1
            assert order["orderId"] in receipts[0].as_string()

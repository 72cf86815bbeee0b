"""End to end: chatd marks offline recipients, beat's sweep in a real worker mails them
through a real SMTP sink, and restd honours the mail's one-click unsubscribe link."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId

from core.ids import conversation_id
from core.mongo import EMAIL_NOTIFICATIONS, USERS
from proto.client import ChatClient
from tests.chat_harness import Chat, running_chatd
from tests.harness import Services
from tests.restd_harness import running_restd
from tests.workers_harness import (
    Mailbox,
    await_until,
    parts,
    sink,
    task_results,
    worker,
    worker_settings,
)

QUIET_S = 5.0
BURST = 100


async def send_all(client: ChatClient, to: str, count: int) -> list[str]:
    """Send ``count`` messages and wait for every ack; returns their ids in order."""
    temps = [await client.private_message(to, f"message {i}") for i in range(count)]
    ids = {}
    while len(ids) < count:
        data = await client.wait_for("message-delivered", timeout=30)
        ids[data["tempId"]] = data["messageId"]
    return [ids[t] for t in temps]


def offline_results(settings: Any) -> list[dict[str, Any]]:
    return [r for r in task_results(settings) if r.get("kind") == "messages"]


def outcome_of(results: list[dict[str, Any]], user: str) -> list[str]:
    return [r["outcome"] for r in results if r["userId"] == user]


async def presence_gone(chat: Chat, user: str) -> bool:
    """chatd's own view: no claim on the user counts any more (core/presence.py)."""
    online, _ = (await chat.running.node.presence.statuses([user]))[user]
    return not online


async def test_offline_email_once_burst_read_opt_out_and_unsubscribe(
    services: Services, tmp_path: Path
) -> None:
    box = Mailbox(tmp_path / "mail")
    with sink(box.dir, tmp_path / "smtp.log") as smtp:
        settings = worker_settings(
            services,
            smtp_port=smtp.port,
            offline_email_quiet_s=QUIET_S,
            email_sweep_interval_s=0.5,
            presence_grace_s=0.1,
            msg_burst=BURST * 2,
            msg_rate_per_s=1000.0,
        )
        with worker(settings, tmp_path / "worker.log", beat=True):
            async with running_chatd(settings) as chat, running_restd(settings) as api:
                names = ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
                ids = {n: await chat.user(n) for n in names}
                alice, bob, carol, dave, erin, frank, gina = (ids[n] for n in names)
                for x, y in [(alice, bob), (carol, dave), (erin, frank), (alice, gina)]:
                    await chat.connect_users(x, y)
                await chat.stores.db[USERS].update_one(
                    {"_id": ObjectId(gina)}, {"$set": {"prefs": {"emailMessages": False}}}
                )

                # Reading first: frank reads erin's messages, on a device, then leaves.
                e = await chat.client(erin)
                to_frank = await send_all(e, frank, 2)
                f = await chat.client(frank)
                assert f.hello["unreadCount"] == 2
                await f.send(
                    "message-read",
                    {"conversationId": conversation_id(erin, frank), "upToMessageId": to_frank[-1]},
                )
                assert (await f.wait_for("message-read"))["unreadCount"] == 0
                await f.close()
                await await_until_async(lambda: presence_gone(chat, frank), "frank offline")

                a = await chat.client(alice)
                await send_all(a, bob, 3)
                await send_all(a, gina, 1)  # opted out
                c = await chat.client(carol)
                await send_all(c, dave, BURST)  # a burst: one email

                results = await await_until(
                    lambda: len(r := offline_results(settings)) >= 4 and r, "4 sweep decisions"
                )
                assert outcome_of(results, bob) == ["sent"]
                assert outcome_of(results, dave) == ["sent"]
                assert outcome_of(results, frank) == ["skipped_no_unread"]
                assert outcome_of(results, gina) == ["skipped_opted_out"]
                mails = box.all()
                assert len(mails) == 2, [m["To"] for m in mails]
                (to_bob,) = box.to(f"{bob}@example.test")
                (to_dave,) = box.to(f"{dave}@example.test")
                assert to_bob["Subject"] == "alice sent you 3 messages"
                text, html = parts(to_bob)
                assert "You have 3 unread messages waiting." in text
                assert "<strong>3</strong> unread messages" in html
                assert to_dave["Subject"] == f"carol sent you {BURST} messages"
                assert f"You have {BURST} unread messages waiting." in parts(to_dave)[0]
                for mail in (to_bob, to_dave):
                    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                for user in (bob, dave, frank, gina):
                    shard = chat.stores.redis.for_user(user)
                    assert await shard.zscore(chat.stores.keys.offline_due(), user) is None

                # The same notification again (bob due once more, nothing new): no mail.
                shard = chat.stores.redis.for_user(bob)
                await shard.zadd(chat.stores.keys.offline_due(), {bob: time.time() - 1})
                await await_until(
                    lambda: (
                        outcome_of(offline_results(settings), bob) == ["sent", "duplicate"] or None
                    ),
                    "bob's second decision",
                )
                assert len(box.all()) == 2
                note = await chat.stores.db[EMAIL_NOTIFICATIONS].find_one({"userId": bob})
                assert note is not None and note["state"] == "sent"

                # The one-click link in bob's mail: works once; a tampered one is refused.
                match = re.fullmatch(r"<(.+)>", str(to_bob["List-Unsubscribe"]))
                assert match is not None
                url = match.group(1)
                assert url.startswith(f"{api.base_url}/api/email/unsubscribe?token=")
                async with httpx.AsyncClient(timeout=10) as mail_client:
                    body = {"List-Unsubscribe": "One-Click"}
                    done = await mail_client.post(url, data=body)
                    assert done.status_code == 200, done.text
                    assert done.json()["pref"] == "emailMessages"
                    again = await mail_client.post(url, data=body)
                    assert again.status_code == 409
                    assert again.json()["error"]["code"] == "unsubscribe_token_used"
                    tampered = await mail_client.post(url[:-4] + "AAAA", data=body)
                    assert tampered.status_code == 400
                    assert tampered.json()["error"]["code"] == "invalid_unsubscribe_token"
                user_doc = await chat.stores.db[USERS].find_one({"_id": ObjectId(bob)})
                assert user_doc is not None and user_doc["prefs"]["emailMessages"] is False

                # Unsubscribed: a new message to bob is swept but mails nothing.
                await send_all(a, bob, 1)
                await await_until(
                    lambda: len(outcome_of(offline_results(settings), bob)) == 3 or None,
                    "bob's third decision",
                )
                assert outcome_of(offline_results(settings), bob)[-1] == "skipped_opted_out"
                assert len(box.all()) == 2


async def await_until_async(check: Any, what: str, timeout: float = 30.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)

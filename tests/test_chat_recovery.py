"""Offline delivery and the gap-free sync guarantee under concurrent senders and reconnects."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from core.settings import Settings
from proto.client import ChatClient
from tests.chat_harness import running_chatd


async def test_offline_recipient_gets_everything_by_sync(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        texts = [f"while you were away {i}" for i in range(7)]
        for text in texts:
            temp = await a.private_message(bob, text)
            await a.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)
        b = await chat.client(bob)
        assert b.hello["unreadCount"] == 7
        page1 = await b.sync("0.0", limit=5)
        assert [m["text"] for m in page1["messages"]] == texts[:5]
        assert page1["hasMore"] is True
        page2 = await b.sync(page1["cursor"], limit=5)
        assert [m["text"] for m in page2["messages"]] == texts[5:]
        assert page2["hasMore"] is False
        assert page2["cursor"] == "7.0"
        # Bob's other device sees his own sent messages through sync as well.
        temp = await b.private_message(alice, "reply")
        await b.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        b2 = await chat.client(bob)
        mine = await b2.sync(page2["cursor"])
        assert [m["text"] for m in mine["messages"]] == ["reply"]
        assert mine["cursor"] == "7.1"


async def test_sync_is_gap_free_under_concurrent_senders_and_reconnects(
    settings: Settings,
) -> None:
    """Several senders on several sockets write to one reader, who reconnects and syncs
    in a tight loop; the union of live and synced messages is exactly the acked set,
    in stream order, with no duplicates."""
    # The reader reconnects and syncs in a tight loop, far past any real client's budget.
    settings = settings.model_copy(
        update={
            "msg_rate_per_s": 10_000.0,
            "msg_burst": 10_000,
            "handshake_burst": 10_000,
            "sync_burst": 10_000,
        }
    )
    senders_n, per_sender = 4, 150
    rng = random.Random(7)
    async with running_chatd(settings) as chat:
        reader = await chat.user("reader")
        senders = [await chat.user(f"s{i}") for i in range(senders_n)]
        for s in senders:
            await chat.connect_users(s, reader)
        acked: set[str] = set()
        done = asyncio.Event()
        stats = {"connects": 0, "live": 0, "synced": 0}

        async def send_all(user: str) -> None:
            sockets = [await chat.client(user), await chat.client(user)]  # two devices each
            for i in range(per_sender):
                if i % 30 == 0:
                    # Keep sending and reconnecting interleaved: a fast store must not let
                    # the senders finish before the reader has reconnected a few times.
                    await _until(lambda i=i: stats["connects"] > i // 30, 10.0)
                sock = sockets[i % 2]
                temp = await sock.private_message(reader, f"{user}:{i}")
                ack = await sock.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)
                acked.add(ack["messageId"])
                if rng.random() < 0.2:
                    await asyncio.sleep(0)
            for sock in sockets:
                await sock.close()

        received: list[str] = []  # in the order the reader saw them
        positions: list[int] = []
        cursor = "0.0"

        async def read_loop() -> None:
            nonlocal cursor
            while True:
                client = await ChatClient.connect(
                    chat.url, chat.token(reader), codec=rng.choice(["json", "msgpack"])
                )
                stats["connects"] += 1
                # Catch up from the last cursor seen, page by page.
                while True:
                    page = await client.sync(cursor, limit=rng.choice([5, 20, 100]))
                    for m in page["messages"]:
                        received.append(m["messageId"])
                        stats["synced"] += 1
                    cursor = page["cursor"]
                    if not page["hasMore"]:
                        break
                # Then live for a short while.
                deadline = asyncio.get_running_loop().time() + rng.uniform(0.0, 0.05)
                while asyncio.get_running_loop().time() < deadline:
                    try:
                        frame = await client.recv(timeout=0.01)
                    except TimeoutError:
                        continue
                    if frame and frame["type"] == "incoming-message":
                        received.append(frame["data"]["messageId"])
                        stats["live"] += 1
                        positions.append(int(frame["data"]["cursor"].split(".")[0]))
                        cursor = frame["data"]["cursor"]
                await client.close()
                if done.is_set():
                    return

        reader_task = asyncio.create_task(read_loop())
        await asyncio.gather(*(send_all(s) for s in senders))
        done.set()
        await reader_task
        # A last catch-up after every sender has finished.
        client = await ChatClient.connect(chat.url, chat.token(reader))
        while True:
            page = await client.sync(cursor, limit=100)
            received.extend(m["messageId"] for m in page["messages"])
            cursor = page["cursor"]
            if not page["hasMore"]:
                break
        await client.close()

        assert len(acked) == senders_n * per_sender
        assert len(received) == len(set(received)), "a message was delivered twice"
        assert set(received) == acked, f"missing {len(acked - set(received))}"
        # In order: the reader saw the messages in the order of its inbound stream.
        docs = await chat.stores.db.messages.find(
            {"toUserId": reader}, projection={"inKey": 1}
        ).to_list()
        stream_order = [str(d["_id"]) for d in sorted(docs, key=lambda d: d["inKey"])]
        assert received == stream_order
        assert cursor == f"{senders_n * per_sender}.0"
        assert positions == sorted(positions)
        # The run exercised both paths many times over.
        assert stats["connects"] >= 5 and stats["live"] > 0 and stats["synced"] > 0, stats


async def _until(condition: Any, timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)

"""Presence, typing, read receipts, backpressure and store failure over real sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket

from core.embedded import free_port, mongo_process
from core.settings import Settings
from tests.chat_harness import running_chatd
from tests.harness import Services, make_settings


async def test_presence_goes_to_connections_with_a_grace_period(settings: Settings) -> None:
    settings = settings.model_copy(update={"presence_grace_s": 0.5})
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        outsider = await chat.user("outsider")
        a = await chat.client(alice)
        o = await chat.client(outsider)
        b = await chat.client(bob)
        assert b.hello["presence"] == [{"userId": alice, "status": "online", "lastSeen": None}]
        online = await a.wait_for("presence")
        assert online == {"userId": bob, "status": "online", "lastSeen": None}

        # A quick reconnect inside the grace period: no flapping.
        await b.close()
        b = await chat.client(bob)
        await asyncio.sleep(1.0)
        assert [p["status"] for p in a.of_type("presence")] == ["online"]

        await b.close()
        offline = await a.wait_for("presence", timeout=5)
        assert offline["userId"] == bob and offline["status"] == "offline"
        assert isinstance(offline["lastSeen"], int)
        user = await chat.stores.db.users.find_one({"_id": __import__("bson").ObjectId(bob)})
        assert user is not None and "lastSeen" in user
        # Presence never reaches users who are not connections.
        assert o.of_type("presence") == []


async def test_typing_is_relayed_not_stored_and_rate_limited(settings: Settings) -> None:
    settings = settings.model_copy(update={"typing_rate_per_s": 0.001, "typing_burst": 2})
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        stranger = await chat.user()
        a = await chat.client(alice)
        b = await chat.client(bob)
        for _ in range(5):
            await a.send("typing", {"toUserId": bob, "state": "start"})
        await a.send("ping")
        await a.wait_for("pong")
        await asyncio.sleep(0.2)
        assert b.of_type("typing") == [{"fromUserId": alice, "state": "start"}] * 2
        await b.send("typing", {"toUserId": stranger, "state": "start"})
        assert (await b.wait_for("error"))["code"] == "not-connected"
        assert await chat.stores.db.messages.count_documents({}) == 0


async def test_read_receipts_store_a_watermark_and_update_unread(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        ids = []
        for i in range(3):
            temp = await a.private_message(bob, f"m{i}")
            ids.append(
                (await a.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t))[
                    "messageId"
                ]
            )
        conv = (await chat.stores.db.messages.find_one({}))["conversationId"]  # type: ignore[index]
        b = await chat.client(bob)
        b2 = await chat.client(bob)
        assert b.hello["unreadCount"] == 3
        await b.send("message-read", {"conversationId": conv, "upToMessageId": ids[1]})
        mine = await b.wait_for("message-read")
        assert mine["unreadCount"] == 1 and mine["readerId"] == bob
        other_device = await b2.wait_for("message-read")
        assert other_device["upToMessageId"] == ids[1]
        receipt = await a.wait_for("message-read")
        assert receipt["readerId"] == bob and receipt["upToMessageId"] == ids[1]
        assert "unreadCount" not in receipt  # the sender is not told the reader's count
        mark = await chat.stores.db.readMarks.find_one({"_id": f"{bob}|{conv}"})
        assert mark is not None and str(mark["upToMessageId"]) == ids[1]
        b3 = await chat.client(bob)
        assert b3.hello["unreadCount"] == 1
        # The sender cannot mark the recipient's messages; a stranger sees no conversation.
        stranger = await chat.user()
        s = await chat.client(stranger)
        await s.send("message-read", {"conversationId": conv, "upToMessageId": ids[2]})
        assert (await s.wait_for("error"))["code"] == "not-found"


async def _raw_ws_that_never_reads(port: int, token: str) -> socket.socket:
    """A real websocket handshake from a client whose receive buffer is tiny and never read."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_slow_consumer_is_shed_then_disconnected_and_recovers(settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "msg_rate_per_s": 100_000.0,
            "msg_burst": 100_000,
            "out_buffer_max_bytes": 64 * 1024,
            "typing_rate_per_s": 100_000.0,
            "typing_burst": 100_000,
        }
    )
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        stuck = await _raw_ws_that_never_reads(settings.chatd_port, chat.token(bob))
        node = chat.running.node
        for _ in range(50):
            if node.hub.has_user(bob):
                break
            await asyncio.sleep(0.05)
        sent = 0
        while node.hub.has_user(bob) and sent < 5000:
            for _ in range(20):  # bursts, so the test does not wait an ack per message
                temp = await a.private_message(bob, "y" * 3000)
                await a.send("typing", {"toUserId": bob, "state": "start"})
                sent += 1
            await a.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)
        assert not node.hub.has_user(bob), "the slow consumer was never disconnected"
        assert node.metrics.slow_consumer_drops._value.get() == 1
        assert node.metrics.shed_frames._value.get() > 0  # typing went first
        stuck.close()
        # Nothing was lost: a new socket gets every message by sync.
        b = await chat.client(bob)
        cursor, total = "0.0", 0
        while True:
            page = await b.sync(cursor, limit=500)
            total += len(page["messages"])
            cursor = page["cursor"]
            if not page["hasMore"]:
                break
        assert total == sent


async def test_store_failure_answers_unavailable_and_recovers(services: Services) -> None:
    port = free_port()
    mongo_dir = services.workdir / f"mongo-{port}"
    mongo = mongo_process(mongo_dir, port=port).start()
    settings = make_settings(
        services, mongo_url=f"mongodb://127.0.0.1:{port}", persist_timeout_s=1.0
    )
    try:
        async with running_chatd(settings) as chat:
            alice, bob = await chat.pair()
            a = await chat.client(alice)
            temp = await a.private_message(bob, "before")
            await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
            mongo.stop()
            temp = await a.private_message(bob, "while down", temp_id="down-1")
            err = await a.wait_for("error", timeout=30)
            assert err == {
                "code": "unavailable",
                "tempId": "down-1",
                "message": "message not stored; retry with the same tempId",
            }
            assert a.of_type("message-delivered")[-1]["tempId"] != "down-1"
            mongo = mongo_process(mongo_dir, port=port).start()
            for _ in range(60):  # the client retries with the same tempId until it is acked
                await a.private_message(bob, "while down", temp_id="down-1")
                frame = await a.recv(timeout=30)
                assert frame is not None
                if frame["type"] == "message-delivered":
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("service did not resume")
            b = await chat.client(bob)
            page = await b.sync("0.0")
            assert [m["text"] for m in page["messages"]] == ["before", "while down"]
    finally:
        mongo.stop()


async def test_offline_recipient_is_marked_once_for_the_email_sweep(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        for i in range(5):
            temp = await a.private_message(bob, f"burst {i}")
            await a.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)
        shard = chat.stores.redis.for_user(bob)
        key = chat.stores.keys.offline_due()
        for _ in range(50):
            marks = await shard.zrange(key, 0, -1, withscores=True)
            if marks:
                break
            await asyncio.sleep(0.02)
        assert [m.decode() for m, _ in marks] == [bob]  # one mark for a burst
        b = await chat.client(bob)
        temp = await a.private_message(bob, "while online")
        await b.wait_for("incoming-message", lambda d: d["text"] == "while online")
        assert alice.encode() not in [m for m, _ in await shard.zrange(key, 0, -1, withscores=True)]

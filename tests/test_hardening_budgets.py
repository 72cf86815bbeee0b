"""Every chat frame has a budget, a user's sockets are capped, and a block takes effect at
once for receipts, typing and presence (real sockets, real REST for the block)."""

from __future__ import annotations

import asyncio
from typing import Any

from core.ids import conversation_id
from core.settings import Settings
from proto.client import ChatClient, HandshakeRefused
from tests.chat_harness import running_chatd
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd


async def _answers(client: ChatClient, n: int) -> list[dict[str, Any]]:
    frames = []
    for _ in range(n):
        frame = await client.recv(timeout=10)
        assert frame is not None
        frames.append(frame)
    return frames


async def test_sync_read_and_ping_floods_are_rate_limited(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        b = await chat.client(bob)
        temp = await b.private_message(alice, "hi")
        ack = await b.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        await a.wait_for("incoming-message")
        conv = conversation_id(alice, bob)
        for event, data, burst in (
            ("sync", {"cursor": "0.0"}, settings.sync_burst),
            ("ping", {}, settings.ping_burst),
            (
                "message-read",
                {"conversationId": conv, "upToMessageId": ack["messageId"]},
                settings.read_burst,
            ),
        ):
            flood = burst + 20
            for _ in range(flood):
                await a.send(event, data)
            frames = [f for f in await _answers(a, flood) if f["type"] == "error"]
            limited = [f for f in frames if f["data"]["code"] == "rate-limited"]
            assert len(limited) >= 15, (event, len(limited))
            assert all(f["data"]["code"] == "rate-limited" for f in frames), frames[:3]
        await a.close()
        await b.close()


async def test_sockets_and_handshakes_per_user_are_capped(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"max_sockets_per_user": 3, "handshake_burst": 5, "handshake_rate_per_s": 0.1}
    )
    async with running_chatd(settings) as chat:
        alice, _ = await chat.pair()
        first = [await chat.client(alice) for _ in range(3)]
        extra = await ChatClient.connect(chat.url, chat.token(alice), wait_hello=False)
        await asyncio.wait_for(extra.closed.wait(), 10)
        assert extra.close_code == 4003
        # Four handshakes so far; the fifth spends the burst, the sixth is refused
        # before the upgrade.
        fifth = await ChatClient.connect(chat.url, chat.token(alice), wait_hello=False)
        try:
            await ChatClient.connect(chat.url, chat.token(alice), wait_hello=False)
        except HandshakeRefused as exc:
            assert exc.status == 429
        else:
            raise AssertionError("a handshake over the budget was accepted")
        await fifth.close()
        for client in first:
            await client.close()


async def test_a_block_ends_receipts_typing_and_presence_at_once(services: Services) -> None:
    settings = make_settings(services, presence_grace_s=0.2)
    async with running_restd(settings) as api, running_chatd(settings) as chat:
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        await api.connect(alice, bob)
        a = await ChatClient.connect(chat.url, alice.token)
        b = await ChatClient.connect(chat.url, bob.token)
        temp = await a.private_message(bob.id, "hello")
        await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        got = await b.wait_for("incoming-message")

        seen_before_block = len(b.frames)
        resp = await bob.http.post(f"/api/users/{alice.id}/block")
        assert resp.status_code in (200, 201, 204), resp.text
        await asyncio.sleep(0.5)  # the bus carries the change to chatd

        # Bob's receipt and typing no longer reach Alice.
        await b.send(
            "message-read",
            {"conversationId": got["conversationId"], "upToMessageId": got["messageId"]},
        )
        assert (await b.wait_for("error"))["code"] == "not-connected"
        await b.send("typing", {"toUserId": alice.id, "state": "start"})
        assert (await b.wait_for("error"))["code"] == "not-connected"
        # Neither sees the other's next presence change.
        await a.close()
        await asyncio.sleep(1.5)
        b2 = await ChatClient.connect(chat.url, bob.token)
        await b2.close()
        await asyncio.sleep(1.0)
        # (Alice's own "online" may reach Bob after his hello, before the block.)
        assert not [
            f
            for f in b.frames[seen_before_block:]
            if f["type"] == "presence" and f["data"]["userId"] == alice.id
        ]
        assert not [f for f in a.frames if f["type"] in ("message-read", "typing")]
        await b.close()

"""chatd over real sockets: messaging between two and three clients, both codecs."""

from __future__ import annotations

import asyncio

from core.settings import Settings
from proto.models import validate_server_frame
from tests.chat_harness import running_chatd


def assert_valid_frames(frames: list[dict[str, object]]) -> None:
    for frame in frames:
        validate_server_frame(frame)  # raises on any shape drift


async def test_two_clients_message_each_other(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        b = await chat.client(bob)
        assert a.hello["userId"] == alice
        assert a.hello["cursor"] == "0.0"

        temp = await a.private_message(bob, "hello bob")
        ack = await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        got = await b.wait_for("incoming-message")
        assert got["messageId"] == ack["messageId"]
        assert got["text"] == "hello bob"
        assert got["fromUserId"] == alice and got["toUserId"] == bob
        assert got["conversationId"] == ack["conversationId"]
        assert got["cursor"] == "1.0"
        assert ack["cursor"] == "0.1"

        temp2 = await b.private_message(alice, "hi alice")
        await b.wait_for("message-delivered", lambda d: d["tempId"] == temp2)
        back = await a.wait_for("incoming-message")
        assert back["text"] == "hi alice"
        assert back["cursor"] == "1.1"
        # Event shapes: exactly what each side was sent (presence arrives asynchronously).
        await a.seen("presence", lambda d: d["userId"] == bob and d["status"] == "online")
        chat_frames = [f["type"] for f in a.frames if f["type"] != "presence"]
        assert chat_frames == ["hello", "message-delivered", "incoming-message"]
        b_chat = [f["type"] for f in b.frames if f["type"] != "presence"]
        assert b_chat == ["hello", "incoming-message", "message-delivered"]
        # Bob may see Alice come online after his hello (her claim can land while he
        # is being admitted); never anything else.
        assert all(
            f["data"] == {**f["data"], "userId": alice, "status": "online"}
            for f in b.frames
            if f["type"] == "presence"
        )
        assert [f["data"]["userId"] for f in a.frames if f["type"] == "presence"] == [bob]
        assert_valid_frames(a.frames + b.frames)
        await a.close()
        await b.close()


async def test_three_clients_and_multi_device(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        carol = await chat.user("carol")
        await chat.connect_users(carol, bob)
        a1 = await chat.client(alice)
        a2 = await chat.client(alice)  # alice's second device
        b1 = await chat.client(bob)
        b2 = await chat.client(bob)
        c = await chat.client(carol)

        temp = await a1.private_message(bob, "to both of bob's devices")
        ack = await a1.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        for device in (b1, b2):
            got = await device.wait_for("incoming-message")
            assert got["messageId"] == ack["messageId"]
        copy = await a2.wait_for("incoming-message")  # the sender's other device gets a copy
        assert copy["messageId"] == ack["messageId"] and copy["fromUserId"] == alice

        temp_c = await c.private_message(bob, "from carol")
        await c.wait_for("message-delivered", lambda d: d["tempId"] == temp_c)
        for device in (b1, b2):
            got = await device.wait_for("incoming-message")
            assert got["text"] == "from carol"
        await asyncio.sleep(0.1)
        assert [f["type"] for f in a1.frames].count("incoming-message") == 0
        assert a2.of_type("incoming-message") == [copy]
        for client in (a1, a2, b1, b2, c):
            assert_valid_frames(client.frames)
            await client.close()


async def test_json_and_msgpack_peers_talk(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice, codec="json")
        b = await chat.client(bob, codec="msgpack")
        assert a.codec.name == "devconnect.v1.json"
        assert b.codec.name == "devconnect.v1.msgpack"
        temp = await a.private_message(bob, "json → msgpack ✓")
        got = await b.wait_for("incoming-message")
        assert got["text"] == "json → msgpack ✓"
        await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        temp = await b.private_message(alice, "msgpack → json")
        got = await a.wait_for("incoming-message")
        assert got["text"] == "msgpack → json"
        await b.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        await a.close()
        await b.close()

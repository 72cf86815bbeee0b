"""chatd's rules over real sockets: idempotency, permissions, bad input, auth, limits."""

from __future__ import annotations

import asyncio

import pytest

from core.auth import TokenIssuer
from core.sessions import Authenticator
from core.settings import Settings
from proto.client import ChatClient, HandshakeRefused
from tests.chat_harness import running_chatd


async def test_retry_with_same_temp_id_is_idempotent_across_sockets(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a1 = await chat.client(alice)
        b = await chat.client(bob)
        await a1.private_message(bob, "once", temp_id="retry-1")
        first = await a1.wait_for("message-delivered")
        await a1.private_message(bob, "once", temp_id="retry-1")  # same socket
        again = await a1.wait_for("message-delivered")
        a2 = await chat.client(alice)  # another socket of the sender
        await a2.private_message(bob, "once", temp_id="retry-1")
        other = await a2.wait_for("message-delivered", lambda d: d["tempId"] == "retry-1")
        assert first["messageId"] == again["messageId"] == other["messageId"]
        await asyncio.sleep(0.2)
        assert len(b.of_type("incoming-message")) == 1  # never a second copy
        count = await chat.stores.db.messages.count_documents({"dedupKey": f"{alice}:retry-1"})
        assert count == 1


async def test_concurrent_retries_store_one_message(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        sockets = [await chat.client(alice) for _ in range(4)]
        await asyncio.gather(*(s.private_message(bob, "x", temp_id="same") for s in sockets))
        acks = [await s.wait_for("message-delivered") for s in sockets]
        assert len({a["messageId"] for a in acks}) == 1
        assert await chat.stores.db.messages.count_documents({"fromUserId": alice}) == 1


async def test_not_connected_and_unknown_recipient(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice = await chat.user("alice")
        stranger = await chat.user("stranger")
        pending = await chat.user("pending")
        await chat.connect_users(alice, pending, status="pending")
        a = await chat.client(alice)
        for to, code in (
            (stranger, "not-connected"),
            (pending, "not-connected"),
            ("0123456789abcdef01234567", "unknown-recipient"),
            (alice, "invalid-recipient"),
        ):
            temp = await a.private_message(to, "hi")
            err = await a.wait_for("error")
            assert (err["code"], err["tempId"]) == (code, temp)
        assert await chat.stores.db.messages.count_documents({}) == 0
        assert not a.closed.is_set()


async def test_connection_change_invalidates_the_cached_check(settings: Settings) -> None:
    from core.bus import connection_changed

    async with running_chatd(settings) as chat:
        alice, bob = await chat.user("alice"), await chat.user("bob")
        a = await chat.client(alice)
        await a.private_message(bob, "before")
        assert (await a.wait_for("error"))["code"] == "not-connected"
        await chat.connect_users(alice, bob)
        await connection_changed(chat.stores.redis, chat.stores.keys, alice, bob)
        for _ in range(50):
            temp = await a.private_message(bob, "after")
            frame = await a.recv()
            assert frame is not None
            if frame["type"] == "message-delivered":
                assert frame["data"]["tempId"] == temp
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the cached refusal was never invalidated")


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_bad_input_gets_precise_errors_and_the_socket_stays_open(
    settings: Settings, codec: str
) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice, codec=codec)
        enc = a.codec.encode
        cases: list[tuple[bytes | str, str]] = [
            ("{not json" if codec == "json" else b"\xc1\xc1", "bad-frame"),
            (enc({"no": "type"}), "bad-frame"),
            (enc({"type": "fly", "data": {}}), "unknown-event"),
            (enc({"type": "private-message", "data": {"toUserId": bob}}), "invalid-payload"),
            (
                enc(
                    {
                        "type": "private-message",
                        "data": {"toUserId": "nope", "tempId": "t", "text": "x"},
                    }
                ),
                "invalid-payload",
            ),
            (
                enc(
                    {
                        "type": "private-message",
                        "data": {"toUserId": bob, "tempId": "t1", "text": "   "},
                    }
                ),
                "empty-text",
            ),
            (
                enc(
                    {
                        "type": "private-message",
                        "data": {"toUserId": bob, "tempId": "t2", "text": "x" * 4001},
                    }
                ),
                "text-too-long",
            ),
            (
                enc({"type": "typing", "data": {"toUserId": bob, "state": "dancing"}}),
                "invalid-payload",
            ),
            (enc({"type": "sync", "data": {"cursor": "garbage"}}), "invalid-cursor"),
            (
                enc(
                    {
                        "type": "message-read",
                        "data": {"conversationId": "x-y", "upToMessageId": "0" * 24},
                    }
                ),
                "not-found",
            ),
        ]
        if codec == "msgpack":
            cases.append(("text frame on msgpack", "bad-frame"))
        for raw, code in cases:
            await a.send_raw(raw)
            err = await a.wait_for("error")
            assert err["code"] == code, (raw, err)
        # Still open, still working.
        temp = await a.private_message(bob, "x" * 4000)
        await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        err_fields = next(f for f in a.of_type("error") if f["code"] == "invalid-payload")
        assert err_fields["details"][0]["field"] == "data.tempId"


async def test_oversized_frame_closes_with_1009(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, _bob = await chat.pair()
        a = await chat.client(alice)
        await a.send_raw("x" * (64 * 1024 + 1))
        await asyncio.wait_for(a.closed.wait(), 5)
        assert a.close_code == 1009


async def test_rate_limit_answers_rate_limited_and_stores_nothing(settings: Settings) -> None:
    settings = settings.model_copy(update={"msg_rate_per_s": 1.0, "msg_burst": 3})
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        a = await chat.client(alice)
        temps = [await a.private_message(bob, f"m{i}") for i in range(6)]
        outcomes: dict[str, str] = {}
        while len(outcomes) < 6:
            frame = await a.recv()
            assert frame is not None
            if frame["type"] in ("message-delivered", "error"):
                outcomes[frame["data"]["tempId"]] = frame["data"].get("code", "ok")
        assert [outcomes[t] for t in temps] == ["ok"] * 3 + ["rate-limited"] * 3
        assert await chat.stores.db.messages.count_documents({}) == 3


async def test_handshake_authentication(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice = await chat.user()
        good = chat.token(alice)
        import jwt

        # A token that expired long ago.
        stale = jwt.encode(
            {"sub": alice, "iat": 1, "exp": 2, "iatMs": 1000},
            settings.jwt_secret,
            algorithm="HS256",
        )
        tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        foreign = TokenIssuer("another-secret-another-secret-123456", 60).issue_access(alice)
        for token in (None, stale, tampered, foreign, "not-a-jwt"):
            with pytest.raises(HandshakeRefused) as refused:
                await ChatClient.connect(chat.url, token)
            assert refused.value.status == 401
        for via in ("header", "cookie", "query"):
            client = await ChatClient.connect(chat.url, good, via=via)
            assert client.hello["userId"] == alice
            await client.close()
        # Revoked by logout-all: tokens issued before it no longer open a socket.
        auth = Authenticator(
            TokenIssuer(settings.jwt_secret, 900), chat.stores.redis, chat.stores.keys
        )
        await asyncio.sleep(0.01)
        await auth.revoke_all(alice)
        with pytest.raises(HandshakeRefused) as refused:
            await ChatClient.connect(chat.url, good)
        assert refused.value.status == 401
        await asyncio.sleep(0.01)
        fresh = chat.token(alice)
        client = await ChatClient.connect(chat.url, fresh)
        await client.close()


async def test_origin_must_be_allowed(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice = await chat.user()
        with pytest.raises(HandshakeRefused) as refused:
            await chat.client(alice, origin="https://evil.example")
        assert refused.value.status == 403
        ok = await chat.client(alice, origin=settings.allowed_origins[0])
        await ok.close()


async def test_logout_all_closes_open_sockets(settings: Settings) -> None:
    from core.bus import logout_all

    async with running_chatd(settings) as chat:
        alice = await chat.user()
        sockets = [await chat.client(alice) for _ in range(2)]
        await logout_all(chat.stores.redis, chat.stores.keys, alice)
        for s in sockets:
            await asyncio.wait_for(s.closed.wait(), 5)
            assert s.close_code == 4001


async def test_subprotocol_negotiation(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice = await chat.user()
        none = await chat.client(alice, subprotocols=[])
        assert none.codec.name == "devconnect.v1.json"
        unknown = await chat.client(alice, subprotocols=["graphql-ws"])
        assert unknown.codec.name == "devconnect.v1.json"
        both = await chat.client(
            alice, subprotocols=["devconnect.v1.msgpack", "devconnect.v1.json"]
        )
        assert both.codec.name == "devconnect.v1.msgpack"
        for c in (none, unknown, both):
            await c.close()

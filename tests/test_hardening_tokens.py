"""Sockets never outlive their tokens: expiry closes them unless `auth` renews the token,
and logout-all holds within one heartbeat period even when its bus message is lost."""

from __future__ import annotations

import asyncio

from core.auth import TokenIssuer
from core.settings import Settings
from proto.client import ChatClient
from tests.chat_harness import running_chatd

FAST = {"token_check_interval_s": 0.5, "presence_ttl_s": 3.0}


def _short_token(settings: Settings, user: str, ttl_s: int) -> str:
    return TokenIssuer(settings.jwt_secret, ttl_s).issue_access(user)


async def test_a_socket_closes_when_its_token_expires(settings: Settings) -> None:
    settings = settings.model_copy(update=FAST)
    async with running_chatd(settings) as chat:
        alice, _ = await chat.pair()
        client = await ChatClient.connect(chat.url, _short_token(settings, alice, 1))
        assert client.hello["tokenExpiresAt"] > 0
        await asyncio.wait_for(client.closed.wait(), 30)
        assert client.close_code == 4002


async def test_auth_renews_the_token_and_the_socket_stays(settings: Settings) -> None:
    settings = settings.model_copy(update=FAST)
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        client = await ChatClient.connect(chat.url, _short_token(settings, alice, 1))
        # Another user's token, and garbage, are refused; the socket keeps its own.
        await client.send("auth", {"token": chat.token(bob)})
        err = await client.wait_for("error")
        assert err["code"] == "unauthenticated"
        await client.send("auth", {"token": "not.a.token"})
        err = await client.wait_for("error")
        assert err["code"] == "unauthenticated"
        await client.send("auth", {"token": chat.token(alice)})
        ok = await client.wait_for("auth-ok")
        assert ok["expiresAt"] > client.hello["tokenExpiresAt"]
        await asyncio.sleep(8)  # past the first token's expiry and its leeway
        await client.send("ping")
        assert await client.wait_for("pong")
        assert not client.closed.is_set()
        await client.close()


async def test_logout_all_holds_when_its_message_is_lost(settings: Settings) -> None:
    settings = settings.model_copy(update=FAST)
    async with running_chatd(settings) as chat:
        alice, _ = await chat.pair()
        client = await chat.client(alice)
        # What logout-all stores, without the bus message that normally closes sockets.
        await chat.running.node.authenticator.revoke_all(alice)
        await asyncio.wait_for(client.closed.wait(), 15)
        assert client.close_code == 4001

"""Presence kept alive by one lease per node (core/presence.py, chatd/presence.py),
and every socket's keepalive on one wheel (chatd/keepalive.py): real Redis, real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis

from chatd.presence import Presence
from core.keys import Keys
from core.redis import RedisShards
from core.settings import Settings
from tests.chat_harness import running_chatd
from workers.sweep import is_online

TTL_S = 1.5


@asynccontextmanager
async def shards(settings: Settings) -> AsyncIterator[RedisShards]:
    redis_shards = RedisShards(settings.redis_urls)
    try:
        yield redis_shards
    finally:
        await redis_shards.close()


def _keys(settings: Settings) -> Keys:
    return Keys(settings.redis_key_prefix)


async def _online(reader: Presence, user: str) -> bool:
    await reader.renew_lease()  # what the reader's heartbeat does: learn the live leases
    return (await reader.statuses([user]))[user][0]


async def test_a_claim_lives_as_long_as_its_node_lease(settings: Settings) -> None:
    keys = _keys(settings)
    async with shards(settings) as redis_shards:
        node = Presence(redis_shards, keys, "n1", TTL_S)
        reader = Presence(redis_shards, keys, "reader", TTL_S)
        await node.renew_lease()
        await node.claim(["alice"])
        assert await _online(reader, "alice")
        # Past the claim's own expiry: it still counts while the node renews its lease,
        # though nothing was written for alice herself.
        for _ in range(3):
            await asyncio.sleep(TTL_S / 2)
            await node.renew_lease()
        assert await _online(reader, "alice")
        sync = redis.Redis.from_url(settings.redis_urls[redis_shards.index_for("alice")])
        assert is_online(sync, keys, "alice")

        # The node dies without a word: once its lease runs out, alice is offline.
        await asyncio.sleep(TTL_S + 0.2)
        assert not await _online(reader, "alice")
        assert not is_online(sync, keys, "alice")
        sync.close()


async def test_a_restarted_node_does_not_revive_its_old_claims(settings: Settings) -> None:
    keys = _keys(settings)
    async with shards(settings) as redis_shards:
        old = Presence(redis_shards, keys, "n1", TTL_S)
        await old.renew_lease()
        await old.claim(["bob"])  # bob's socket was here when the process died
        await asyncio.sleep(TTL_S + 0.2)
        # The same node id comes back (a StatefulSet pod) with a new process.
        new = Presence(redis_shards, keys, "n1", TTL_S)
        await new.renew_lease()
        await new.claim(["carol"])
        assert not await _online(new, "bob")
        assert await _online(new, "carol")


async def test_the_heartbeat_claims_everyone_again_after_redis_lost_its_data(
    settings: Settings,
) -> None:
    keys = _keys(settings)
    users = [f"user{i}" for i in range(50)]
    errors: list[int] = []
    async with shards(settings) as redis_shards:
        node = Presence(redis_shards, keys, "n1", TTL_S)
        reader = Presence(redis_shards, keys, "reader", TTL_S)
        node.start_heartbeat(lambda: users, lambda: errors.append(1), lambda live: None)
        try:
            deadline = time.monotonic() + 5
            while not all([await _online(reader, u) for u in users[:3]]):
                assert time.monotonic() < deadline, "first beat did not claim"
                await asyncio.sleep(0.1)
            # What a Redis restart without persistence does to our keys.
            for client in redis_shards.clients:
                found = [k async for k in client.scan_iter(match=f"{keys.prefix}*")]
                if found:
                    await client.delete(*found)
            assert not await _online(reader, users[0])
            deadline = time.monotonic() + 5
            while not all([await _online(reader, u) for u in users]):
                assert time.monotonic() < deadline, "the heartbeat did not claim again"
                await asyncio.sleep(0.1)
        finally:
            await node.close()
        assert not errors


async def test_a_peer_that_stops_answering_pings_is_closed(settings: Settings) -> None:
    settings = settings.model_copy(update={"ws_ping_interval_s": 0.5})
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        polite = await chat.client(alice)  # answers pings (the client library pongs)
        # A peer that completes the upgrade, then never answers again (chatd runs in
        # this process, so the peer's socket is asyncio's too).
        host, port = "127.0.0.1", settings.chatd_port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {chat.token(bob)}\r\n\r\n"
            ).encode()
        )
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert status.startswith(b"HTTP/1.1 101")
        received = b""
        try:
            async with asyncio.timeout(5):
                # Reads what the server sends (pings, then a close), never answers.
                while b"ping timed out" not in received:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        writer.close()
        assert b"ping timed out" in received, f"a silent peer was not closed: {received!r}"
        await asyncio.sleep(1.5)  # three intervals: the polite one is still there
        assert not polite.closed.is_set()
        await polite.send("ping")
        assert await polite.wait_for("pong")
        await polite.close()

"""What hello reads without a store read per socket: contact lists and stream heads.

Contact lists (core/relations.py) are a cache of connectionRequests, kept by
restd's own writers; stream heads (chatd/heads.py) are recorded in Redis by
every commit before its fan-out. Both must stay right across restarts, expiry,
concurrent changes and a writer that stopped half way.
"""

from __future__ import annotations

import asyncio
import socket

from core import relations
from core.heads import KEEP_S, record_new_accounts
from core.keys import Keys
from core.mongo import CONTACT_LISTS
from core.redis import RedisShards
from core.settings import Settings
from proto.client import ChatClient
from tests.chat_harness import running_chatd
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd


def presence_of(hello: dict[str, object]) -> set[str]:
    return {str(p["userId"]) for p in hello["presence"]}  # type: ignore[attr-defined]


async def test_restd_keeps_contact_lists_and_hello_reads_them(services: Services) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api, running_chatd(settings) as chat:
        alice, bob, carol = [await api.signup(n) for n in ("Alice", "Bob", "Carol")]
        lists = api.stores.db[CONTACT_LISTS]
        for other in (bob, carol):
            asked = await alice.http.post(
                "/api/connection-requests", json={"toUserId": other.id, "message": ""}
            )
            answer = await other.http.patch(
                f"/api/connection-requests/{asked.json()['id']}", json={"status": "accepted"}
            )
            assert answer.status_code == 200, answer.text
        listed = await lists.find_one({"_id": alice.id})
        assert listed is not None and set(listed["ids"]) == {bob.id, carol.id}
        a = await chat.client(alice.id)
        assert presence_of(a.hello) == {bob.id, carol.id}
        await a.close()

        assert (await alice.http.delete(f"/api/connections/{bob.id}")).status_code == 204
        assert (await alice.http.post(f"/api/users/{carol.id}/block")).status_code == 204
        for user in (alice, bob, carol):
            doc = await lists.find_one({"_id": user.id})
            assert doc is not None and doc["ids"] == [], (user.name, doc)
        a = await chat.client(alice.id)
        assert presence_of(a.hello) == set()
        await a.close()


async def test_a_list_missing_or_built_before_a_change_is_never_served(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        db = chat.stores.db
        alice, bob, carol = [await chat.user(n) for n in ("alice", "bob", "carol")]
        await chat.connect_users(alice, bob)
        # A user from before lists existed: built at the first hello.
        await db[CONTACT_LISTS].delete_one({"_id": alice})
        a = await chat.client(alice)
        assert presence_of(a.hello) == {bob}
        assert (await db[CONTACT_LISTS].find_one({"_id": alice}))["ids"] == [bob]
        await a.close()
        # A rebuild that read before a change cannot land after it: its version is gone.
        stale = await db[CONTACT_LISTS].find_one({"_id": alice})
        read_before = await relations.connections_of(db, alice)
        await chat.connect_users(alice, carol)  # bumps the version and rebuilds
        assert not await relations._keep(db, alice, int(stale["ver"]), read_before)
        assert set((await db[CONTACT_LISTS].find_one({"_id": alice}))["ids"]) == {bob, carol}
        # Many sockets opening at once each get their own list.
        clients = await asyncio.gather(*(chat.client(u) for u in (alice, bob, carol)))
        assert [presence_of(c.hello) for c in clients] == [{bob, carol}, {alice}, {alice}]


async def test_no_list_stands_while_a_change_is_in_flight(settings: Settings) -> None:
    """The list decides permissions, so it must never be older than a committed change:
    none is kept while a change is in flight, and a change whose writer died is cleared
    once its window has passed."""
    async with running_chatd(settings) as chat:
        db = chat.stores.db
        lists = db[CONTACT_LISTS]
        alice, bob = await chat.pair()
        async with relations.changing_contacts(db, (alice, bob)):
            assert "ids" not in await lists.find_one({"_id": alice})
            await db.connectionRequests.update_many({}, {"$set": {"status": "removed"}})
            # A hello now reads connectionRequests itself and keeps nothing.
            a = await chat.client(alice)
            assert presence_of(a.hello) == set()
            assert "ids" not in await lists.find_one({"_id": alice})
            temp = await a.private_message(bob, "still there?")
            err = await a.wait_for("error")
            assert (err["code"], err["tempId"]) == ("not-connected", temp)
        assert (await lists.find_one({"_id": alice}))["ids"] == []
        assert await db.messages.count_documents({}) == 0

        # A writer that died inside its change: its token outlives it until its time.
        await lists.update_one(
            {"_id": bob}, {"$unset": {"ids": ""}, "$addToSet": {"changes": "1:dead"}}
        )
        assert await relations.contacts_of_many(db, [bob]) == [[]]
        doc = await lists.find_one({"_id": bob})
        assert doc["ids"] == [] and doc["changes"] == []


async def _send(sender: ChatClient, to: str, texts: list[str]) -> None:
    for text in texts:
        temp = await sender.private_message(to, text)
        await sender.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)


async def _heads(chat: object, user: str) -> dict[bytes, float]:
    redis = chat.stores.redis.for_user(user)  # type: ignore[attr-defined]
    key = chat.stores.keys.stream_heads(user)  # type: ignore[attr-defined]
    return dict(await redis.zrange(key, 0, -1, withscores=True))


async def test_heads_recorded_by_commits_give_hello_the_exact_cursor(settings: Settings) -> None:
    async with running_chatd(settings, keep_data=True) as chat:
        alice, bob = await chat.pair()
        await _send(await chat.client(alice), bob, ["m0", "m1", "m2"])
        # A commit records only the streams it moved (alice's hello recorded hers).
        assert await _heads(chat, bob) == {b"i": 3.0}
        assert await _heads(chat, alice) == {b"i": 0.0, b"o": 3.0}
        # Expired (or a Redis restarted empty): read from the store, and recorded again.
        await chat.stores.redis.for_user(bob).delete(chat.stores.keys.stream_heads(bob))
        b = await chat.client(bob)
        assert b.hello["cursor"] == "3.0"
        assert await _heads(chat, bob) == {b"i": 3.0, b"o": 0.0}
    # A fresh node on yesterday's data and heads: the same cursors, no store read needed.
    async with running_chatd(settings) as chat:
        b = await chat.client(bob)
        assert b.hello["cursor"] == "3.0"
        a = await chat.client(alice)
        assert a.hello["cursor"] == "0.3"


async def test_a_head_left_behind_by_a_failed_record_loses_nothing(settings: Settings) -> None:
    """A record that failed (Redis down) leaves a head behind the store: hello's cursor
    is then behind, and the positions after it still reach the socket, in order."""
    async with running_chatd(settings, keep_data=True) as chat:
        alice, bob = await chat.pair()
        await _send(await chat.client(alice), bob, ["m0", "m1", "m2"])
    async with running_chatd(settings) as chat:  # a node that has not seen them
        redis = chat.stores.redis.for_user(bob)
        await redis.zadd(chat.stores.keys.stream_heads(bob), {"i": 1})  # behind by two
        b = await chat.client(bob)
        assert b.hello["cursor"] == "1.0"
        a = await chat.client(alice)
        temp = await a.private_message(bob, "m3")
        await a.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        got = [await b.wait_for("incoming-message") for _ in range(3)]
        assert [g["text"] for g in got] == ["m1", "m2", "m3"]
        assert [g["cursor"] for g in got] == ["2.0", "3.0", "4.0"]


async def test_signup_records_empty_heads_and_commits_raise_them(services: Services) -> None:
    """A new account's streams are empty: signup records both heads at 0, so its first
    hello reads Redis; the first commits raise them as for anyone."""
    settings = make_settings(services)
    async with running_restd(settings) as api, running_chatd(settings) as chat:
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        for user in (alice, bob):
            assert await _heads(chat, user.id) == {b"i": 0.0, b"o": 0.0}
            key = chat.stores.keys.stream_heads(user.id)
            assert 0 < await chat.stores.redis.for_user(user.id).ttl(key) <= KEEP_S
        asked = await alice.http.post(
            "/api/connection-requests", json={"toUserId": bob.id, "message": ""}
        )
        await bob.http.patch(
            f"/api/connection-requests/{asked.json()['id']}", json={"status": "accepted"}
        )
        a, b = await chat.client(alice.id), await chat.client(bob.id)
        assert a.hello["cursor"] == b.hello["cursor"] == "0.0"
        await _send(a, bob.id, ["m0", "m1"])
        assert await _heads(chat, bob.id) == {b"i": 2.0, b"o": 0.0}
        assert await _heads(chat, alice.id) == {b"i": 0.0, b"o": 2.0}


async def test_recording_new_accounts_with_redis_unreachable_does_not_raise() -> None:
    """Best effort, so a signup never fails on it: with Redis unreachable the heads are
    read from the store at the first hello instead."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        redis = RedisShards([f"redis://127.0.0.1:{port}/0"])
        try:
            await record_new_accounts(redis, Keys("t:"), ["64b000000000000000000001"])
        finally:
            await redis.close()

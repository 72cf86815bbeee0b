"""Day two for chatd: events at connect time, bursts of sockets, a store with history.

Real sockets, a real chatd (in-process, or a subprocess for the storms), the
real REST service where a real producer of events is needed, and the session's
MongoDB-wire server and Redis shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId

from core.auth import TokenIssuer
from core.embedded import free_port
from core.ids import conversation_id, pair_key
from core.migrations import apply_all, recount_unread
from core.mongo import CONNECTION_REQUESTS, CONVERSATIONS, MESSAGES, UNREAD_COUNTS, USERS
from core.settings import Settings
from proto.client import ChatClient, HandshakeRefused
from tests.chat_harness import running_chatd
from tests.cluster_harness import running_cluster
from tests.harness import Services, make_settings
from tests.restd_harness import Api, User, running_restd


async def test_request_sent_the_moment_hello_arrives_reaches_the_socket(
    services: Services,
) -> None:
    """20 rounds: a connection request sent as the recipient's hello arrives is never lost."""
    settings = make_settings(services)
    async with running_restd(settings) as api, running_chatd(settings) as chat:
        recipient = await api.signup("Recipient")
        bystander = await api.signup("Bystander")
        # Another user's socket is open on the node: its listener is busy listening.
        other = await chat.client(bystander.id)
        missed = [
            n
            for n in range(20)
            if not await _request_at_hello(chat.url, recipient, await _quick_user(api, n))
        ]
        await other.close()
        assert missed == [], f"requests lost in rounds {missed}"


async def _quick_user(api: Api, n: int) -> User:
    """A user as signup leaves it, without signup's deliberately slow password hash."""
    oid = ObjectId()
    await api.stores.db[USERS].insert_one(
        {
            "_id": oid,
            "name": f"Sender {n}",
            "email": f"{oid}@example.test",
            "passwordHash": "not-a-login",
            "skills": [],
            "headline": "",
            "location": "",
            "bio": "",
            "avatarUrl": None,
            "links": [],
            "prefs": {},
            "createdAt": datetime.now(UTC),
            "lastSeen": None,
        }
    )
    token = TokenIssuer(api.settings.jwt_secret, api.settings.jwt_access_ttl_s).issue_access(
        str(oid)
    )
    http = api.client(Authorization=f"Bearer {token}")
    return User(str(oid), f"Sender {n}", f"{oid}@example.test", "", token, http)


async def _request_at_hello(url: str, recipient: User, sender: User) -> bool:
    """Connect the recipient; the moment hello arrives, the sender asks to connect."""
    posted: list[asyncio.Task[Any]] = []
    seen: list[dict[str, Any]] = []

    def on_frame(frame: dict[str, Any]) -> None:
        seen.append(frame)
        if frame["type"] == "hello":
            posted.append(
                asyncio.get_running_loop().create_task(
                    sender.http.post("/api/connection-requests", json={"toUserId": recipient.id})
                )
            )

    client = await ChatClient.connect(url, recipient.token, on_frame=on_frame, wait_hello=False)
    try:
        await _until(lambda: bool(posted), 10)
        resp = await posted[0]
        assert resp.status_code == 201, resp.text
        return await _eventually(
            lambda: any(
                f["type"] == "connection-request" and f["data"]["fromUserId"] == sender.id
                for f in seen
            ),
            5,
        )
    finally:
        await client.close()


async def test_250_contacts_dropping_at_once_all_reach_the_user_as_offline(
    services: Services,
) -> None:
    settings = make_settings(services, presence_grace_s=0.5)
    async with running_chatd(settings) as chat:
        hub = await chat.user("hub")
        contacts = [await chat.user(f"c{i}") for i in range(250)]
        await chat.stores.db[CONNECTION_REQUESTS].insert_many(
            [
                {
                    "fromUserId": hub,
                    "toUserId": c,
                    "status": "accepted",
                    "pairKey": pair_key(hub, c),
                }
                for c in contacts
            ]
        )
        me = await chat.client(hub)
        sockets = await asyncio.gather(*(chat.client(c) for c in contacts))
        await _wait_presence(me, set(contacts), "online", 30)
        for socket in sockets:
            socket.abort()  # all at once, no goodbye
        await _wait_presence(me, set(contacts), "offline", 60)
        errors = {
            **await _metric_values(chat.metrics_url, "chatd_bus_errors_total"),
            **await _metric_values(chat.metrics_url, "chatd_store_errors_total"),
        }
        assert errors == {}, f"Redis/Mongo errors during the drop: {errors}"
        await me.close()


async def test_2000_sockets_reconnecting_right_after_1000_dropped(
    services: Services, tmp_path: Path
) -> None:
    """A network blip: 1,000 sockets drop at once, then 2,000 reconnect at once."""
    base = make_settings(services, presence_grace_s=1.0, log_format="text")
    async with running_cluster(base, tmp_path, nodes=1) as cluster:
        users = await cluster.users(2000)
        # Each user has a few contacts, so hello reads and presence fan-out are real.
        await cluster.stores.db[CONNECTION_REQUESTS].insert_many(
            [
                {
                    "fromUserId": users[i],
                    "toUserId": users[(i + k) % len(users)],
                    "status": "accepted",
                    "pairKey": pair_key(users[i], users[(i + k) % len(users)]),
                }
                for i in range(len(users))
                for k in (1, 7)
            ]
        )
        first = await _connect_all(cluster, users[:1000])
        for client in first:
            client.abort()
        second = await _connect_all(cluster, users)
        assert len(second) == 2000
        assert all(c.hello["userId"] == u for c, u in zip(second, users, strict=True))
        node = cluster.nodes[0]
        refusals = await _metric_values(node.metrics_url, "chatd_handshake_refusals_total")
        errors = {
            **await _metric_values(node.metrics_url, "chatd_bus_errors_total"),
            **await _metric_values(node.metrics_url, "chatd_store_errors_total"),
        }
        log = node.log_path.read_text(errors="replace")
        await asyncio.gather(*(c.close() for c in second))
        assert refusals == {}, f"handshakes refused: {refusals}"
        assert errors == {}, f"store or Redis errors: {errors}"
        for bad in ("Too many connections", "pool paused", "Traceback", "AutoReconnect"):
            assert bad not in log, f"{bad!r} in chatd's log"
        assert "token=" not in log


async def test_a_store_hiccup_at_connect_is_a_clean_retryable_close(services: Services) -> None:
    from core.embedded import mongo_process

    port = free_port()
    mongo_dir = services.workdir / f"mongo-{port}"
    mongo = mongo_process(mongo_dir, port=port).start()
    settings = make_settings(services, mongo_url=f"mongodb://127.0.0.1:{port}")
    try:
        async with running_chatd(settings) as chat:
            alice, _ = await chat.pair()
            mongo.stop()
            outcome: str
            try:
                client = await ChatClient.connect(
                    chat.url, chat.token(alice), via="query", wait_hello=False
                )
            except HandshakeRefused as exc:
                outcome = f"refused {exc.status}"
            else:
                await asyncio.wait_for(client.closed.wait(), 60)
                outcome = f"closed {client.close_code}"
            assert outcome in ("closed 1013", "refused 503"), outcome
            refusals = await _metric_values(chat.metrics_url, "chatd_handshake_refusals_total")
            assert sum(refusals.values()) >= 1
            # The store is back: the same client's retry is admitted.
            mongo = mongo_process(mongo_dir, port=port).start()
            for _ in range(60):
                with contextlib.suppress(HandshakeRefused, ConnectionError, TimeoutError):
                    client = await ChatClient.connect(chat.url, chat.token(alice))
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("never admitted after the store came back")
            assert client.hello["userId"] == alice
            await client.close()
    finally:
        mongo.stop()


async def test_reusing_a_temp_id_for_another_recipient_is_refused(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        carol = await chat.user("carol")
        await chat.connect_users(alice, carol)
        a = await chat.client(alice)
        await a.private_message(bob, "to bob", temp_id="same")
        first = await a.wait_for("message-delivered", lambda d: d["tempId"] == "same")
        await a.private_message(carol, "to carol", temp_id="same")
        err = await a.wait_for("error")
        assert err["code"] == "temp-id-reused" and err["tempId"] == "same"
        # A real retry (same recipient) is still the same message.
        await a.private_message(bob, "to bob", temp_id="same")
        again = await a.wait_for("message-delivered", lambda d: d["tempId"] == "same")
        assert again["messageId"] == first["messageId"]
        await a.close()
        # Another node, which never saw the first message: refused by the store's key.
        other = settings.model_copy(update={"chatd_port": free_port(), "node_id": "other"})
        async with running_chatd(other) as chat2:
            a2 = await chat2.client(alice)
            await a2.private_message(carol, "to carol", temp_id="same")
            err = await a2.wait_for("error")
            assert err["code"] == "temp-id-reused"
            docs = await chat.stores.db[MESSAGES].find({"fromUserId": alice}).to_list()
            assert [d["toUserId"] for d in docs if not d.get("tombstone")] == [bob]
            await a2.close()


async def test_unread_counts_are_maintained_and_survive_reconnects(settings: Settings) -> None:
    async with running_chatd(settings) as chat:
        alice, bob = await chat.pair()
        carol = await chat.user("carol")
        await chat.connect_users(carol, bob)
        a = await chat.client(alice)
        c = await chat.client(carol)
        sent = []
        for n in range(3):
            temp = await a.private_message(bob, f"a{n}")
            sent.append(await a.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t))
        temp = await c.private_message(bob, "c0")
        await c.wait_for("message-delivered", lambda d: d["tempId"] == temp)
        b = await chat.client(bob)
        assert b.hello["unreadCount"] == 4
        conv = conversation_id(alice, bob)
        await b.send(
            "message-read", {"conversationId": conv, "upToMessageId": sent[1]["messageId"]}
        )
        receipt = await b.wait_for("message-read", lambda d: d["readerId"] == bob)
        assert receipt["unreadCount"] == 2  # a2 and c0
        # Reading again up to the same message changes nothing.
        await b.send(
            "message-read", {"conversationId": conv, "upToMessageId": sent[1]["messageId"]}
        )
        receipt = await b.wait_for("message-read", lambda d: d["readerId"] == bob)
        assert receipt["unreadCount"] == 2
        await b.close()
        b = await chat.client(bob)
        assert b.hello["unreadCount"] == 2
        await b.close()
        await a.close()
        await c.close()


async def test_yesterdays_messages_are_migrated_into_counters(services: Services) -> None:
    """Messages written before the counters existed: `migrate` builds them, once."""
    settings = make_settings(services)
    async with running_restd(settings) as api:
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        await api.connect(alice, bob)
        conv = conversation_id(alice.id, bob.id)
        old = []
        for n, (frm, to, status) in enumerate(
            [(alice, bob, "read"), (bob, alice, "sent"), (alice, bob, "sent"), (alice, bob, "sent")]
        ):
            oid = ObjectId()
            old.append(oid)
            await api.stores.db[MESSAGES].insert_one(
                {
                    "_id": oid,
                    "conversationId": conv,
                    "fromUserId": frm.id,
                    "toUserId": to.id,
                    "text": f"old {n}",
                    "status": status,
                    "inKey": f"{to.id}:{n:012d}",
                    "outKey": f"{frm.id}:{n:012d}",
                    "dedupKey": f"{frm.id}:old{n}",
                }
            )
        assert await apply_all(api.stores.db) == ["inbox-v1"]
        assert await apply_all(api.stores.db) == []
        bobs = (await bob.http.get("/api/conversations")).json()["items"]
        assert [(c["user"]["name"], c["lastMessage"]["text"], c["unreadCount"]) for c in bobs] == [
            ("Alice", "old 3", 2)
        ]
        alices = (await alice.http.get("/api/conversations")).json()["items"]
        assert [c["unreadCount"] for c in alices] == [1]


async def test_conversation_list_pages_without_repeats(services: Services) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api:
        me = await api.signup("Me")
        others = [await api.signup(f"Peer {i}") for i in range(7)]
        for i, other in enumerate(others):
            await api.connect(me, other)
            await api.insert_message(other if i % 2 else me, me if i % 2 else other, f"m{i}")
        names: list[str] = []
        cursor = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["before"] = cursor
            body = (await me.http.get("/api/conversations", params=params)).json()
            names += [c["user"]["name"] for c in body["items"]]
            cursor = body["nextCursor"]
            if not cursor:
                break
        assert names == [f"Peer {i}" for i in reversed(range(7))]


# -- helpers ---------------------------------------------------------------------------


def _chain(*callbacks: Any) -> Any:
    def call(frame: dict[str, Any]) -> None:
        for callback in callbacks:
            callback(frame)

    return call


async def _until(condition: Any, timeout_s: float) -> None:
    if not await _eventually(condition, timeout_s):
        raise TimeoutError("condition not met")


async def _eventually(condition: Any, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def _wait_presence(
    client: ChatClient, users: set[str], status: str, timeout_s: float
) -> None:
    def latest() -> set[str]:
        state: dict[str, str] = {p["userId"]: p["status"] for p in client.hello.get("presence", [])}
        for data in client.of_type("presence"):
            state[data["userId"]] = data["status"]
        return {u for u in users if state.get(u) == status}

    if not await _eventually(lambda: latest() == users, timeout_s):
        missing = users - latest()
        raise AssertionError(f"{len(missing)} of {len(users)} never reported {status}")


async def _connect_all(cluster: Any, users: list[str]) -> list[ChatClient]:
    results = await asyncio.gather(
        *(cluster.client(0, u, timeout_s=120) for u in users), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {len(users)} failed, e.g. {failures[0]!r}"
    return [r for r in results if isinstance(r, ChatClient)]


async def _metric_values(metrics_url: str, name: str) -> dict[str, float]:
    """Non-zero samples of one metric from the service's metrics endpoint, by label set."""
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(metrics_url)
        # An endpoint that is not there must fail the test, not read as "no errors".
        resp.raise_for_status()
        text = resp.text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match and float(match.group(2)) != 0:
            values[match.group(1) or ""] = float(match.group(2))
    return values


async def test_recount_repairs_counters_a_killed_node_left_short(services: Services) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api:
        alice, bob, carol = [await api.signup(n) for n in ("Alice", "Bob", "Carol")]
        await api.connect(alice, bob)
        await api.connect(carol, bob)
        for n in range(3):
            await api.insert_message(alice, bob, f"a{n}")
        await api.insert_message(carol, bob, "c0")
        # What a node killed between commit and count leaves: counts short.
        db = api.stores.db
        await db[UNREAD_COUNTS].update_one({"_id": bob.id}, {"$set": {"total": 1}})
        await db[CONVERSATIONS].update_one(
            {"_id": conversation_id(alice.id, bob.id)}, {"$set": {"unread0": 0, "unread1": 0}}
        )
        fixed = await recount_unread(db)
        assert fixed["conversationsFixed"] == 1
        assert (await db[UNREAD_COUNTS].find_one({"_id": bob.id}) or {})["total"] == 4
        bobs = (await bob.http.get("/api/conversations")).json()["items"]
        assert sorted(c["unreadCount"] for c in bobs) == [1, 3]

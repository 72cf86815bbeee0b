"""chatd across nodes: two chatd processes, two Redis shards, and faults that must lose nothing."""

from __future__ import annotations

import asyncio
import random

import httpx

from core.embedded import redis_process
from core.sharding import shard_for
from proto.client import ChatClient
from tests.cluster_harness import Cluster, FailoverReader, running_cluster
from tests.harness import Services, make_settings

FAST = {
    "msg_rate_per_s": 10_000.0,
    "msg_burst": 10_000,
    "presence_ttl_s": 3.0,
    "presence_grace_s": 0.3,
    "drain_timeout_s": 3.0,
    "drain_batches": 3,
    "reconnect_delay_max_ms": 500,
}


async def _acked_sends(client: ChatClient, to: str, n: int, prefix: str) -> list[str]:
    ids = []
    for i in range(n):
        temp = await client.private_message(to, f"{prefix}{i}")
        ack = await client.wait_for("message-delivered", lambda d, t=temp: d["tempId"] == t)
        ids.append(ack["messageId"])
    return ids


async def test_cross_node_delivery_multi_device_and_presence(services: Services) -> None:
    settings = make_settings(services, **FAST)
    async with running_cluster(settings, services.workdir) as cluster:
        alice, bob = await cluster.users(2)
        await cluster.connect_users(alice, bob)
        a0 = await cluster.client(0, alice)
        b1 = await cluster.client(1, bob)
        # Presence crosses nodes: alice (node 0) learns bob (node 1) came online.
        await a0.seen("presence", lambda d: d["userId"] == bob and d["status"] == "online")

        [to_bob] = await _acked_sends(a0, bob, 1, "0->1 ")
        got = await b1.wait_for("incoming-message")
        assert got["messageId"] == to_bob and got["cursor"] == "1.0"
        [to_alice] = await _acked_sends(b1, alice, 1, "1->0 ")
        got = await a0.wait_for("incoming-message")
        assert got["messageId"] == to_alice

        # Alice's second device on the other node gets copies of what she sends.
        a1 = await cluster.client(1, alice)
        await asyncio.sleep(1.0)  # let its holder announcement reach node 0
        [again] = await _acked_sends(a0, bob, 1, "copy ")
        copy = await a1.wait_for("incoming-message")
        assert copy["messageId"] == again and copy["fromUserId"] == alice
        got = await b1.wait_for("incoming-message")
        assert got["messageId"] == again

        # Alice stays online while one of her sockets is open on either node.
        await a0.close()
        await asyncio.sleep(0.8)
        assert not [
            p for p in b1.of_type("presence") if p["userId"] == alice and p["status"] == "offline"
        ]
        await a1.close()
        await b1.wait_for("presence", lambda d: d["userId"] == alice and d["status"] == "offline")


async def test_kill_9_of_a_node_loses_no_acked_message(services: Services) -> None:
    settings = make_settings(services, **FAST)
    async with running_cluster(settings, services.workdir) as cluster:
        senders = await cluster.users(3)
        [reader_id] = await cluster.users(1)
        for s in senders:
            await cluster.connect_users(s, reader_id)
        reader = FailoverReader(cluster, reader_id)
        await reader.connect(0)  # the reader sits on the node that will die
        acked: set[str] = set()
        sent = 0
        stop = asyncio.Event()

        async def send_loop(user: str, node: int) -> None:
            nonlocal sent
            client = await cluster.client(node, user)
            i = 0
            while not stop.is_set():
                try:
                    temp = await client.private_message(reader_id, f"{user}:{i}")
                    sent += 1
                    ack = await client.wait_for(
                        "message-delivered", lambda d, t=temp: d["tempId"] == t, timeout=5
                    )
                except (ConnectionError, TimeoutError):
                    client = await _reconnect(cluster, user, [1])
                    continue  # not acked: the client would retry with the same tempId
                acked.add(ack["messageId"])
                i += 1
            await client.close()

        tasks = [
            asyncio.create_task(send_loop(s, n)) for s, n in zip(senders, (0, 1, 1), strict=True)
        ]
        await asyncio.sleep(1.0)
        cluster.nodes[0].kill()
        assert reader.client is not None
        await asyncio.wait_for(reader.client.closed.wait(), 10)
        await reader.failover([1])
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        await reader.catch_up()
        stored = {
            str(d["_id"])
            for d in await cluster.stores.db.messages.find({"toUserId": reader_id}).to_list()
        }
        print(
            f"kill -9: sent={sent} acked={len(acked)} live={len(reader.live)} "
            f"synced={len(reader.synced)} stored={len(stored)}"
        )
        assert acked <= stored, "an acked message is not in MongoDB"
        assert acked <= set(reader.seen), f"missing {len(acked - set(reader.seen))} acked"
        assert len(reader.seen) == len(set(reader.seen)), "duplicates"
        assert len(acked) > 20 and reader.reconnects == 1


async def _reconnect(cluster: Cluster, user: str, nodes: list[int]) -> ChatClient:
    for _ in range(100):
        for node in nodes:
            try:
                return await cluster.client(node, user)
            except Exception:  # any refusal: try the next node
                await asyncio.sleep(0.05)
    raise RuntimeError("no node accepted")


async def test_a_stopped_redis_shard_degrades_live_delivery_only(services: Services) -> None:
    ports = [0, 0]
    shards = []
    for i in range(2):
        shards.append(redis_process().start())
        ports[i] = shards[i].port
    settings = make_settings(
        services, redis_urls=[f"redis://127.0.0.1:{p}/0" for p in ports], **FAST
    )
    try:
        async with running_cluster(settings, services.workdir) as cluster:
            users = await cluster.users(12)
            # A reader on shard 1 and a sender on shard 0.
            reader_id = next(u for u in users if shard_for(u, 2) == 1)
            sender_id = next(u for u in users if shard_for(u, 2) == 0)
            await cluster.connect_users(sender_id, reader_id)
            reader = FailoverReader(cluster, reader_id)
            await reader.connect(1)
            sender = await cluster.client(0, sender_id)
            before = await _acked_sends(sender, reader_id, 3, "before ")

            shards[1].stop()
            async with httpx.AsyncClient() as http:
                for _ in range(50):
                    ready = await http.get(cluster.nodes[0].http + "/readyz")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 503
                assert list(ready.json()["failing"]) == ["redis[1]"]
                # Sending still persists and acks: MongoDB is the source of truth.
                during = await _acked_sends(sender, reader_id, 5, "during ")

                shards[1] = redis_process(port=ports[1]).start()
                for _ in range(100):
                    ready = await http.get(cluster.nodes[0].http + "/readyz")
                    if ready.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 200, ready.text
            after = await _acked_sends(sender, reader_id, 3, "after ")
            # The reader's client recovers everything through sync.
            await reader.catch_up()
            assert reader.seen == before + during + after or set(reader.seen) == set(
                before + during + after
            )
            assert len(reader.seen) == len(set(reader.seen))
            print(
                f"shard down: acked={len(before + during + after)} live={len(reader.live)} "
                f"synced={len(reader.synced)}"
            )
    finally:
        for shard in shards:
            shard.stop()


async def test_rolling_restart_moves_every_client_with_nothing_lost(services: Services) -> None:
    settings = make_settings(services, **FAST)
    rng = random.Random(3)
    async with running_cluster(settings, services.workdir) as cluster:
        senders = await cluster.users(2)
        [reader_id] = await cluster.users(1)
        for s in senders:
            await cluster.connect_users(s, reader_id)
        reader = FailoverReader(cluster, reader_id)
        await reader.connect(0)
        acked: set[str] = set()
        stop = asyncio.Event()

        async def send_loop(user: str) -> None:
            client = await _reconnect(cluster, user, [rng.randrange(2)])
            i = 0
            while not stop.is_set():
                temp = f"{user}-{i}"
                try:
                    await client.private_message(reader_id, "x", temp_id=temp)
                    ack = await client.wait_for(
                        "message-delivered", lambda d, t=temp: d["tempId"] == t, timeout=5
                    )
                except (ConnectionError, TimeoutError):
                    client = await _reconnect(cluster, user, [0, 1])
                    continue  # retried with the same tempId: idempotent
                acked.add(ack["messageId"])
                i += 1
            await client.close()

        async def follow() -> None:
            while not stop.is_set():
                assert reader.client is not None
                await reader.client.closed.wait()
                if stop.is_set():
                    return
                await reader.failover([0, 1])

        tasks = [asyncio.create_task(send_loop(s)) for s in senders]
        follower = asyncio.create_task(follow())
        for index in (0, 1):
            await asyncio.sleep(0.7)
            code = await cluster.nodes[index].terminate()
            assert code == 0
            cluster.nodes[index].start()  # back, so the other node can be restarted next
        await asyncio.sleep(0.7)
        stop.set()
        await asyncio.gather(*tasks)
        follower.cancel()
        if reader.client is None or reader.client.closed.is_set():
            await reader.failover([0, 1])
        await reader.catch_up()
        print(
            f"rolling restart: acked={len(acked)} live={len(reader.live)} "
            f"synced={len(reader.synced)} reconnects={reader.reconnects}"
        )
        missing = acked - set(reader.seen)
        if missing:
            docs = await cluster.stores.db.messages.find(
                {"toUserId": reader_id}, projection={"inKey": 1, "fromUserId": 1}
            ).to_list()
            keyed = sorted((d["inKey"], str(d["_id"]) in missing) for d in docs)
            lost = [k for k, m in keyed if m]
            first = int(lost[0].rsplit(":", 1)[1])
            around = [
                e
                for e in reader.events
                if not e.startswith("live ") or abs(int(e.split()[1].split(".")[0]) - first) < 4
            ]
            raise AssertionError(
                f"missing {len(missing)} acked: {lost}; cursor {reader.cursor}; "
                f"stream size {len(keyed)}; events: {around}"
            )
        assert len(reader.seen) == len(set(reader.seen))
        assert reader.reconnects >= 1

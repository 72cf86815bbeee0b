"""Graceful drain on SIGTERM, against chatd running as its own process."""

from __future__ import annotations

import asyncio
import json
import signal

from bson import ObjectId

from core.auth import TokenIssuer
from core.ids import pair_key
from core.runtime import open_stores
from proto.client import ChatClient, HandshakeRefused
from tests.harness import Services, make_settings, service_process


async def test_sigterm_drains_persists_and_closes_in_staggered_batches(
    services: Services,
) -> None:
    settings = make_settings(
        services,
        drain_timeout_s=4.0,
        drain_batches=4,
        reconnect_delay_max_ms=3000,
        msg_rate_per_s=10_000.0,
        msg_burst=10_000,
    )
    stores = open_stores(settings)
    alice, bob = str(ObjectId()), str(ObjectId())
    await stores.db.users.insert_many(
        [{"_id": ObjectId(u), "email": f"{u}@x.test"} for u in (alice, bob)]
    )
    await stores.db.connectionRequests.insert_one(
        {
            "fromUserId": alice,
            "toUserId": bob,
            "status": "accepted",
            "pairKey": pair_key(alice, bob),
        }
    )
    issuer = TokenIssuer(settings.jwt_secret, 900)
    url = f"ws://127.0.0.1:{settings.chatd_port}/ws"
    log_path = services.workdir / f"{settings.mongo_db}-chatd.log"
    try:
        with service_process("chatd", settings, settings.chatd_port, log_path) as proc:
            a = await ChatClient.connect(url, issuer.issue_access(alice))
            others = [await ChatClient.connect(url, issuer.issue_access(bob)) for _ in range(12)]
            temps = [await a.private_message(bob, f"in flight {i}") for i in range(30)]
            acked = {(await a.wait_for("message-delivered"))["messageId"]}
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            try:  # no new sockets while draining
                late = await ChatClient.connect(url, issuer.issue_access(alice))
            except (HandshakeRefused, OSError):
                pass
            else:
                await late.close()
                raise AssertionError("a socket was accepted during the drain")
            while True:
                frame = await a.recv(timeout=15)
                if frame is None:
                    break
                if frame["type"] == "message-delivered":
                    acked.add(frame["data"]["messageId"])
            for client in (a, *others):
                await asyncio.wait_for(client.closed.wait(), 15)
                assert client.close_code == 1012
                delay = json.loads(client.close_reason or "{}")["reconnectAfterMs"]
                assert 300 <= delay <= 3000
            # The daemon exits by itself within its bound.
            await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 15)
            assert proc.proc.returncode == 0
        assert len(temps) == 30
        stored = {str(d["_id"]) for d in await stores.db.messages.find({}).to_list()}
        assert acked <= stored  # every ack given was durable
    finally:
        await stores.mongo.drop_database(settings.mongo_db)
        await stores.close()

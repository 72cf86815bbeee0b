"""Several chatd processes on one store and several Redis shards, and clients that fail over."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId

from core.auth import TokenIssuer
from core.embedded import ManagedProcess, free_port
from core.ids import pair_key
from core.runtime import Stores, open_stores
from core.settings import Settings
from proto.client import ChatClient, HandshakeRefused
from tests.harness import settings_env


@dataclass
class Node:
    settings: Settings
    log_path: Path
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.chatd_port}/ws"

    @property
    def http(self) -> str:
        """The node's chat port over HTTP: /healthz and /readyz (not /metrics)."""
        return f"http://127.0.0.1:{self.settings.chatd_port}"

    @property
    def metrics_url(self) -> str:
        """The node's Prometheus endpoint, on its own chatd_metrics_port."""
        return f"http://127.0.0.1:{self.settings.chatd_metrics_port}/metrics"

    def start(self) -> None:
        proc = ManagedProcess(
            f"chatd-{self.settings.node_id}",
            [sys.executable, "-m", "core.cli", "chatd"],
            self.settings.chatd_port,
            self.log_path,
            settings_env(self.settings),
        )
        try:
            self.proc = proc.start()
        except RuntimeError as exc:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}; log tail:\n{tail}") from None

    def kill(self) -> None:
        """kill -9: no drain, no goodbye."""
        if self.proc:
            self.proc.stop(signal.SIGKILL)

    async def terminate(self) -> int:
        """SIGTERM (graceful drain) and wait for the process to exit."""
        assert self.proc and self.proc.proc
        self.proc.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.proc.proc.wait, 30)


@dataclass
class Cluster:
    base: Settings
    nodes: list[Node]
    stores: Stores
    issuer: TokenIssuer = field(init=False)

    def __post_init__(self) -> None:
        self.issuer = TokenIssuer(self.base.jwt_secret, 3600)

    def token(self, user: str) -> str:
        return self.issuer.issue_access(user)

    async def users(self, n: int) -> list[str]:
        ids = [ObjectId() for _ in range(n)]
        await self.stores.db.users.insert_many(
            [{"_id": i, "name": f"u{i}", "email": f"{i}@cluster.test"} for i in ids]
        )
        return [str(i) for i in ids]

    async def connect_users(self, a: str, b: str) -> None:
        await self.stores.db.connectionRequests.insert_one(
            {"fromUserId": a, "toUserId": b, "status": "accepted", "pairKey": pair_key(a, b)}
        )

    async def client(self, node: int, user: str, **kwargs: Any) -> ChatClient:
        return await ChatClient.connect(self.nodes[node].url, self.token(user), **kwargs)


@asynccontextmanager
async def running_cluster(base: Settings, workdir: Path, nodes: int = 2) -> AsyncIterator[Cluster]:
    stores = open_stores(base)
    members = []
    for i in range(nodes):
        settings = base.model_copy(
            update={
                "chatd_port": free_port(),
                "chatd_metrics_port": free_port(),
                "node_id": f"node{i}",
            }
        )
        members.append(Node(settings, workdir / f"{base.mongo_db}-node{i}.log"))
    try:
        for node in members:
            node.start()
        yield Cluster(base, members, stores)
    finally:
        for node in members:
            if node.proc:
                node.proc.stop()
        await stores.mongo.drop_database(base.mongo_db)
        await stores.close()


class FailoverReader:
    """A device that keeps its cursor, and on a lost socket reconnects to any node and syncs."""

    def __init__(self, cluster: Cluster, user: str) -> None:
        self.cluster = cluster
        self.user = user
        self.cursor = "0.0"
        self.live: list[str] = []
        self.synced: list[str] = []
        self.client: ChatClient | None = None
        self.reconnects = 0
        self.syncing = False
        self.events: list[str] = []  # what happened, for a failing test's message

    @property
    def seen(self) -> list[str]:
        return self.live + self.synced

    async def connect(self, node: int) -> None:
        self.syncing = True  # from hello until the first sync result
        self.client = await self.cluster.client(node, self.user, on_frame=self._on_frame)
        self.events.append(f"connected to node{node} hello {self.client.hello['cursor']}")
        await self.catch_up()

    def _on_frame(self, frame: dict[str, Any]) -> None:
        # The protocol's rule: live frames that arrive before a sync's result are
        # all inside that result, so a device ignores them while it syncs.
        if frame["type"] == "incoming-message":
            self.events.append(f"live {frame['data']['cursor']} ignored={self.syncing}")
        if frame["type"] == "incoming-message" and not self.syncing:
            self.live.append(frame["data"]["messageId"])
            self.cursor = frame["data"]["cursor"]

    async def catch_up(self) -> None:
        assert self.client is not None
        self.syncing = True
        while self.syncing:
            await self.client.send("sync", {"cursor": self.cursor, "limit": 200})
            await self._next_sync_result()

    async def _next_sync_result(self) -> None:
        # The result is applied inside the frame callback, synchronously: live frames
        # that follow it on the socket must already count (they are after its cursor).
        assert self.client is not None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self.client.on_frame

        def hook(frame: dict[str, Any]) -> None:
            if frame["type"] == "sync-result" and not done.done():
                page = frame["data"]
                self.events.append(
                    f"sync from {self.cursor} -> {page['cursor']} "
                    f"n={len(page['messages'])} more={page['hasMore']}"
                )
                self.synced.extend(m["messageId"] for m in page["messages"])
                self.cursor = page["cursor"]
                self.syncing = bool(page["hasMore"])
                assert self.client is not None
                self.client.on_frame = previous
                done.set_result(None)
            elif previous is not None:
                previous(frame)

        self.client.on_frame = hook
        try:
            await asyncio.wait_for(done, 15)
        finally:
            if self.client.on_frame is hook:
                self.client.on_frame = previous

    async def failover(self, nodes: list[int]) -> None:
        """Reconnect to the first node that accepts, then sync from the last cursor."""
        self.reconnects += 1
        for _ in range(100):
            for node in nodes:
                # ConnectionError too: the node may close us again while we catch up.
                with contextlib.suppress(OSError, HandshakeRefused, TimeoutError):
                    await self.connect(node)
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError("no node accepted the reconnect")

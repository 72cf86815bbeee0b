"""Helpers for chatd tests: a live daemon in-process, users, connections and tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from chatd.app import RunningChatd, start_chatd
from core import relations
from core.auth import TokenIssuer
from core.ids import pair_key
from core.mongo import CONNECTION_REQUESTS, USERS
from core.runtime import Stores
from core.settings import Settings
from proto.client import ChatClient


@dataclass
class Chat:
    settings: Settings
    running: RunningChatd

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.chatd_port}/ws"

    @property
    def http(self) -> str:
        """The chat port over HTTP: /healthz and /readyz (not /metrics)."""
        return f"http://127.0.0.1:{self.settings.chatd_port}"

    @property
    def metrics_url(self) -> str:
        """chatd's Prometheus endpoint, on chatd_metrics_port."""
        return f"http://127.0.0.1:{self.settings.chatd_metrics_port}/metrics"

    @property
    def stores(self) -> Stores:
        return self.running.node.stores

    def token(self, user_id: str) -> str:
        return TokenIssuer(self.settings.jwt_secret, self.settings.jwt_access_ttl_s).issue_access(
            user_id
        )

    async def user(self, name: str = "dev") -> str:
        oid = ObjectId()
        await self.stores.db[USERS].insert_one(
            {
                "_id": oid,
                "name": name,
                "email": f"{oid}@example.test",
                "skills": [],
                "createdAt": datetime.now(UTC),
            }
        )
        return str(oid)

    async def connect_users(self, a: str, b: str, status: str = "accepted") -> None:
        now = datetime.now(UTC)
        # As restd writes every change to a pair (domain/connections.py).
        async with relations.changing_contacts(self.stores.db, (a, b)):
            await self.stores.db[CONNECTION_REQUESTS].insert_one(
                {
                    "fromUserId": a,
                    "toUserId": b,
                    "status": status,
                    "message": "",
                    "createdAt": now,
                    "updatedAt": now,
                    "pairKey": pair_key(a, b),
                }
            )

    async def pair(self) -> tuple[str, str]:
        a, b = await self.user("alice"), await self.user("bob")
        await self.connect_users(a, b)
        return a, b

    async def client(self, user_id: str, **kwargs: Any) -> ChatClient:
        return await ChatClient.connect(self.url, self.token(user_id), **kwargs)


@asynccontextmanager
async def running_chatd(settings: Settings, *, keep_data: bool = False) -> AsyncIterator[Chat]:
    """A chatd node for one test; its database is dropped afterwards unless ``keep_data``
    (a later node of the same test starts on yesterday's data)."""
    running = await start_chatd(settings)
    try:
        yield Chat(settings, running)
    finally:
        running.server.stop()
        # Bounded, so a socket that will not close cannot hang the suite.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.server.close_all_connections(), 5)
        await asyncio.wait_for(running.stop_metrics(), 5)
        await asyncio.wait_for(running.node.close(), 15)
        if not keep_data:
            db = running.node.stores.db
            await asyncio.wait_for(db.client.drop_database(settings.mongo_db), 15)
        await asyncio.wait_for(running.node.stores.close(), 15)

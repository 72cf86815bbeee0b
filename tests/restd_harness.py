"""A live restd for a test: real HTTP on a free port, real Mongo and Redis behind it.

pytest-tornasync runs ``async def`` tests but has no async fixtures, so tests
write ``async with running_restd(settings) as api:``. Everything made here is
closed on the way out: HTTP clients, the server, the test's Mongo database and
the Redis keys under the test's own prefix (never anyone else's).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from bson import ObjectId

from chatd.inbox import Inbox
from chatd.store import MessageStore
from core.ids import conversation_id
from core.mongo import ensure_indexes
from core.runtime import Stores, open_stores
from core.settings import Settings
from restd.app import start_restd

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


@dataclass
class User:
    id: str
    name: str
    email: str
    password: str
    token: str
    http: httpx.AsyncClient  # sends the bearer token, like a non-browser client

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Api:
    base_url: str
    settings: Settings
    stores: Stores
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    _message_store: MessageStore | None = None

    @property
    def origin(self) -> str:
        return self.settings.allowed_origins[0]

    @property
    def metrics_url(self) -> str:
        """restd's Prometheus endpoint: its own port, not the API's."""
        return f"http://127.0.0.1:{self.settings.restd_metrics_port}/metrics"

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=15.0) as http:
            resp = await http.get(self.metrics_url)
        resp.raise_for_status()
        return resp.text

    def client(self, *, origin: str | None = None, **headers: str) -> httpx.AsyncClient:
        """A client with its own cookie jar; ``origin`` plays a browser page on that origin."""
        all_headers = dict(headers)
        if origin is not None:
            all_headers["Origin"] = origin
        client = httpx.AsyncClient(base_url=self.base_url, headers=all_headers, timeout=15.0)
        self.clients.append(client)
        return client

    def browser(self) -> httpx.AsyncClient:
        """A client acting as the web app on the first allowed origin (cookies, Origin header)."""
        return self.client(origin=self.origin)

    async def signup(
        self, name: str | None = None, email: str | None = None, password: str = PASSWORD
    ) -> User:
        n = next(_counter)
        name = name or f"User {n}"
        email = email or f"user{n}-{uuid.uuid4().hex[:6]}@example.com"
        resp = await self.client().post(
            "/api/auth/signup", json={"name": name, "email": email, "password": password}
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        token = body["accessToken"]
        http = self.client(Authorization=f"Bearer {token}")
        return User(body["user"]["id"], name, email.strip().lower(), password, token, http)

    async def connect(self, a: User, b: User) -> None:
        """Make a and b connected through the API itself."""
        sent = await a.http.post("/api/connection-requests", json={"toUserId": b.id})
        assert sent.status_code == 201, sent.text
        answer = await b.http.patch(
            f"/api/connection-requests/{sent.json()['id']}", json={"status": "accepted"}
        )
        assert answer.status_code == 200, answer.text

    async def insert_message(
        self, sender: User, recipient: User, text: str, status: str = "sent"
    ) -> str:
        """Write a message with chatd's own writer (restd only reads them); returns its id.

        Through the group commit and the inbox counters, as chatd stores it; a
        ``read`` message is then marked read as a receipt from the recipient would.
        """
        if self._message_store is None:
            inbox = Inbox(self.stores.db)
            inbox.start()
            store = MessageStore(self.stores.db, inbox)
            store.start()
            self._message_store = store
        store = self._message_store
        stored = await store.submit(
            sender.id, recipient.id, uuid.uuid4().hex, text, time.monotonic()
        )
        if status == "read":
            await store.inbox.mark_read(
                recipient.id, conversation_id(sender.id, recipient.id), ObjectId(stored.message_id)
            )
        else:
            await store.inbox.flushed()
        return stored.message_id

    async def close_writer(self) -> None:
        if self._message_store is not None:
            await self._message_store.close()
            await self._message_store.inbox.close()
            self._message_store = None

    @asynccontextmanager
    async def events(self, user_id: str) -> AsyncIterator[EventTap]:
        """Listen on a user's bus channel, where restd publishes for chatd."""
        client = self.stores.redis.for_user(user_id)
        channel = self.stores.keys.user_channel(user_id)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        try:
            yield EventTap(pubsub, client, channel)
        finally:
            await pubsub.unsubscribe(channel)
            await pubsub.aclose()


SENTINEL = b'{"kind":"test-sentinel"}'


@dataclass
class EventTap:
    pubsub: Any
    client: Any
    channel: str

    async def published(self) -> list[dict[str, Any]]:
        """Every bus message published so far, in order.

        restd publishes before it answers, so after a response every event of
        that action is already on the channel: we publish a sentinel behind
        them and read up to it; nothing depends on how long anything takes.
        """
        await self.client.publish(self.channel, SENTINEL)
        seen: list[dict[str, Any]] = []
        # A generous bound so that a lost sentinel fails the test instead of hanging it.
        for _ in range(1000):
            msg = await self.pubsub.get_message(timeout=1.0)
            if msg is None or msg["type"] != "message":
                continue  # subscription confirmations, or nothing yet
            if msg["data"] == SENTINEL:
                return seen
            seen.append(orjson.loads(msg["data"]))
        raise AssertionError("the sentinel never arrived on the channel")


async def _cleanup(stores: Stores, settings: Settings) -> None:
    await stores.mongo.drop_database(settings.mongo_db)
    for client in stores.redis.clients:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_key_prefix}*")]
        if keys:
            await client.delete(*keys)


@asynccontextmanager
async def running_restd(settings: Settings) -> AsyncIterator[Api]:
    stores = open_stores(settings)
    await ensure_indexes(stores.db)
    # The server restd's main() runs: same body limits, timeouts and metrics port.
    running = start_restd(stores)
    api = Api(f"http://127.0.0.1:{settings.restd_port}", settings, stores)
    try:
        yield api
    finally:
        await api.close_writer()
        for client in api.clients:
            await client.aclose()
        await running.stop()
        await _cleanup(stores, settings)
        await stores.close()


@contextmanager
def restd_in_thread(settings: Settings) -> Iterator[str]:
    """restd on its own event loop in a thread, for synchronous clients (schemathesis).

    Yields the base URL. The thread owns its loop, stores and server; stopping
    closes them there.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def start() -> None:
        stores = open_stores(settings)
        await ensure_indexes(stores.db)
        holder.update(stores=stores, running=start_restd(stores))

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    async def stop() -> None:
        await holder["running"].stop()
        await _cleanup(holder["stores"], settings)
        await holder["stores"].close()

    thread = threading.Thread(target=run, name="restd-under-test", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    try:
        yield f"http://127.0.0.1:{settings.restd_port}"
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()

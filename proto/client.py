"""A small async client for the chat socket, used by the tests, the benchmark and Locust.

client = await ChatClient.connect("ws://127.0.0.1:8081/ws", token, codec="msgpack")
temp_id = await client.private_message(to_user_id, "hi")
ack = await client.wait_for("message-delivered", lambda d: d["tempId"] == temp_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import secrets
import socket
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultLoopResolver
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from proto import events
from proto.codec import CODECS, JSON, MSGPACK, Codec

Frame = dict[str, Any]
_temp_ids = itertools.count(1)


class HandshakeRefused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.body = body


class LiteralResolver(DefaultLoopResolver):
    """An IP literal resolves to itself; a name goes to asyncio's ``getaddrinfo``.

    asyncio sends every ``getaddrinfo`` to a thread pool, literals included: in a
    storm of 10,000 connects to 127.0.0.1 that round trip took about a quarter of
    the load generator's CPU.
    """

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return await super().resolve(host, port, family)
        if ip.version == 6:
            return [(socket.AF_INET6, (str(ip), port, 0, 0))]
        return [(socket.AF_INET, (str(ip), port))]


class ChatClient:
    resolver = LiteralResolver()

    def __init__(
        self,
        conn: WebSocketClientConnection,
        codec: Codec,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        self.conn = conn
        self.codec = codec
        self.on_frame = on_frame
        self.frames: list[Frame] = []  # every frame received, in order (kept unless on_frame)
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._seen = 0
        self.hello: Frame = {}
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        codec: str = "json",
        via: str = "header",
        origin: str | None = None,
        subprotocols: list[str] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        wait_hello: bool = True,
        max_message_size: int = 16 * 1024 * 1024,
        timeout_s: float = 10.0,
    ) -> ChatClient:
        chosen = MSGPACK if codec == "msgpack" else JSON
        headers: dict[str, str] = {}
        if token and via == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif token and via == "cookie":
            headers["Cookie"] = f"access_token={token}"
        elif token and via == "query":
            url = f"{url}{'&' if '?' in url else '?'}token={token}"
        if origin:
            headers["Origin"] = origin
        request = HTTPRequest(
            url, headers=headers, connect_timeout=timeout_s, request_timeout=timeout_s
        )
        offered = subprotocols if subprotocols is not None else [chosen.name]
        try:
            conn = await websocket_connect(
                request,
                subprotocols=offered,
                max_message_size=max_message_size,
                resolver=cls.resolver,
            )
        except HTTPClientError as exc:
            body = exc.response.body if exc.response is not None else b""
            raise HandshakeRefused(exc.code, body) from None
        codec_used = CODECS.get(conn.selected_subprotocol or "", JSON)
        client = cls(conn, codec_used, on_frame)
        if wait_hello:
            client.hello = await client.wait_for(events.HELLO, timeout=timeout_s)
        return client

    async def _read(self) -> None:
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                self.closed.set()
                await self._inbox.put(None)
                return
            frame: Frame = self.codec.decode(raw)
            if self.on_frame is not None:
                if frame.get("type") == events.HELLO and not self.hello:
                    self.hello = frame["data"]
                    await self._inbox.put(frame)
                self.on_frame(frame)
                continue
            self.frames.append(frame)
            await self._inbox.put(frame)

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason

    # -- sending ------------------------------------------------------------------------

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        await self.send_raw(self.codec.encode({"type": event, "data": data or {}}))

    async def send_raw(self, raw: bytes | str) -> None:
        try:
            await self.conn.write_message(raw, binary=isinstance(raw, bytes))
        except WebSocketClosedError:
            raise ConnectionError(
                f"socket closed ({self.close_code} {self.close_reason})"
            ) from None

    async def private_message(self, to_user_id: str, text: str, temp_id: str | None = None) -> str:
        temp_id = temp_id or f"t{next(_temp_ids)}-{secrets.token_hex(4)}"
        await self.send(
            events.PRIVATE_MESSAGE, {"toUserId": to_user_id, "tempId": temp_id, "text": text}
        )
        return temp_id

    async def sync(self, cursor: str | None, limit: int = 100) -> Any:
        await self.send(events.SYNC, {"cursor": cursor, "limit": limit})
        return await self.wait_for(events.SYNC_RESULT)

    # -- receiving ----------------------------------------------------------------------

    async def recv(self, timeout: float = 10) -> Frame | None:
        """The next frame, or None once the socket is closed."""
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def wait_for(
        self, event: str, predicate: Callable[[Any], bool] | None = None, timeout: float = 10
    ) -> Any:
        """The data of the next frame of this type (matching predicate); others stay in frames."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {event!r} frame within {timeout}s")
            frame = await asyncio.wait_for(self._inbox.get(), remaining)
            if frame is None:
                raise ConnectionError(
                    f"socket closed ({self.close_code} {self.close_reason}) awaiting {event!r}"
                )
            if frame["type"] == event and (predicate is None or predicate(frame["data"])):
                return frame["data"]

    async def seen(
        self, event: str, predicate: Callable[[Any], bool] | None = None, timeout: float = 10
    ) -> Any:
        """Like wait_for, but also matches frames already received (and consumed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for data in self.of_type(event):
                if predicate is None or predicate(data):
                    return data
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no {event!r} frame within {timeout}s")

    def of_type(self, event: str) -> list[Any]:
        return [f["data"] for f in self.frames if f["type"] == event]

    def abort(self) -> None:
        """Drop the TCP connection with no close frame, as a network blip would."""
        protocol = self.conn.protocol
        stream = protocol.stream if protocol is not None else None
        if stream is not None and not stream.closed():
            stream.close()

    async def close(self, code: int = 1000) -> None:
        self.conn.close(code)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5)
        self._reader.cancel()

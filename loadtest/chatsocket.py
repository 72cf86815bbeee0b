"""A chat socket for Locust: a sync websocket (websocket-client) read by a gevent greenlet.

Locust runs on gevent and monkey-patches the socket module before it imports a
locustfile, so websocket-client's blocking reads yield to other users; no
asyncio here. Every timing is reported through Locust's own ``request`` event
with ``request_type="WS"``, so chat latencies land in the same statistics, CSV
and HTML report as the REST calls:

- ``connect``: the upgrade plus the server's ``hello`` frame;
- ``ack``: ``private-message`` sent -> ``message-delivered`` received (stored);
- ``e2e``: ``private-message`` sent -> the recipient's ``incoming-message``;
- ``typing``: ``typing`` sent -> the peer's ``typing`` frame;
- ``read``: ``message-read`` sent -> the sender's ``message-read`` receipt;
- ``sync``: ``sync`` sent -> ``sync-result`` (after a reconnect).

A missing ack or receipt after ``REPLY_TIMEOUT_S`` is reported as a failure;
an ``error`` frame naming a pending ``tempId`` fails that send.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import orjson
import websocket
from locust.env import Environment

log = logging.getLogger(__name__)

REQUEST_TYPE = "WS"
REPLY_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
SUBPROTOCOL = "devconnect.v1.json"


@dataclass
class Pending:
    """Sends waiting for their answer: key -> (start perf_counter, request name)."""

    started: dict[str, tuple[float, str]] = field(default_factory=dict)

    def add(self, key: str, name: str) -> None:
        self.started[key] = (time.perf_counter(), name)

    def pop(self, key: str) -> tuple[float, str] | None:
        return self.started.pop(key, None)

    def expired(self, now: float) -> list[tuple[str, str, float]]:
        old = [
            (key, name, start)
            for key, (start, name) in self.started.items()
            if now - start > REPLY_TIMEOUT_S
        ]
        for key, _name, _start in old:
            del self.started[key]
        return old


class ChatSocket:
    """One user's chat connection; frames are handed to ``on_frame`` as they arrive."""

    def __init__(
        self,
        environment: Environment,
        url: str,
        token: str,
        on_frame: Callable[[ChatSocket, dict[str, Any]], None],
    ) -> None:
        self.environment = environment
        self.url = url
        self.token = token
        self.on_frame = on_frame
        self.ws: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.cursor: str | None = None
        self.user_id: str | None = None
        self._hello = gevent.event.Event()
        self._sync_started: float | None = None

    # -- reporting -------------------------------------------------------------------
    def report(self, name: str, started: float, length: int = 0, exc: Exception | None = None):  # type: ignore[no-untyped-def]
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=exc,
            context={},
        )

    # -- connection ------------------------------------------------------------------
    def connect(self) -> bool:
        started = time.perf_counter()
        self._hello.clear()
        try:
            self.ws = websocket.create_connection(
                self.url,
                header=[f"Authorization: Bearer {self.token}"],
                subprotocols=[SUBPROTOCOL],
                timeout=CONNECT_TIMEOUT_S,
                enable_multithread=False,
            )
            self.ws.settimeout(None)  # the reader greenlet blocks cooperatively
            self.reader = gevent.spawn(self._read_loop, self.ws)
            if not self._hello.wait(CONNECT_TIMEOUT_S):
                raise TimeoutError(f"no hello within {CONNECT_TIMEOUT_S:.0f}s")
        except Exception as exc:  # reported to Locust as a failed connect, never raised
            self.report("connect", started, exc=exc)
            self.close()
            return False
        self.report("connect", started)
        return True

    def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:  # closing a broken socket may fail; nothing to report
                log.debug("close failed", exc_info=True)
        reader, self.reader = self.reader, None
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill(block=False)

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.ws.connected

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        while True:
            try:
                raw = ws.recv()
            except Exception:  # closed or reset: the user reconnects on its next task
                break
            if not raw:
                break
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("undecodable frame from chatd")
                continue
            self._handle(frame, len(raw))
        if self.ws is ws:
            self.ws = None

    def _handle(self, frame: dict[str, Any], length: int) -> None:
        kind = frame.get("type")
        data = frame.get("data") or {}
        if kind == "hello":
            self.user_id = data.get("userId")
            self.cursor = self.cursor or data.get("cursor")
            self._hello.set()
            return
        if kind in ("incoming-message", "message-delivered") and data.get("cursor"):
            self.cursor = data["cursor"]
        if kind == "sync-result" and self._sync_started is not None:
            self.report("sync", self._sync_started, length)
            self._sync_started = None
            self.cursor = data.get("cursor") or self.cursor
        self.on_frame(self, frame)

    # -- sending ---------------------------------------------------------------------
    def send(self, event: str, data: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            ws.send(orjson.dumps({"type": event, "data": data}).decode())
        except Exception as exc:  # a broken pipe: report it and drop the socket
            self.report(event, time.perf_counter(), exc=exc)
            self.close()
            return False
        return True

    def sync(self) -> bool:
        self._sync_started = time.perf_counter()
        data: dict[str, Any] = {"limit": 100}
        if self.cursor:
            data["cursor"] = self.cursor
        return self.send("sync", data)


def new_temp_id() -> str:
    return uuid.uuid4().hex[:16]

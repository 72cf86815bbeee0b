"""The websocket transport: Tornado's handler, adapted to the Session's Transport protocol.

Authentication happens before the upgrade (401 on a missing, expired,
tampered or revoked token); the browser Origin must be allowed (403).
Tornado awaits ``on_message`` before reading the next frame, so each
connection's frames are handled in order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import tornado.web
import tornado.websocket
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from tornado.iostream import StreamClosedError

from chatd.handlers import dispatch
from chatd.node import Node
from chatd.session import Session
from core.auth import AccessClaims, TokenError
from proto.codec import CODECS, JSON, Codec
from proto.errors import CloseCode

log = logging.getLogger(__name__)


class ChatSocket(tornado.websocket.WebSocketHandler):
    node: Node
    claims: AccessClaims
    session: Session | None = None
    codec: Codec = JSON

    def initialize(self, node: Node) -> None:
        self.node = node
        self._fast_write: Callable[[bool, int, bytes], object] | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.node.draining:
            self._refuse(503, "draining", "server is restarting; retry shortly")
            return
        try:
            self.claims = await self.node.authenticator.authenticate(self._token())
        except TokenError:
            self._refuse(401, "unauthenticated", "missing, expired or invalid token")
            return
        except (RedisError, OSError):
            self._refuse(503, "unavailable", "authentication store unavailable")
            return
        if not self.node.handshake_limits.allow(self.claims.user_id):
            self.set_header("Retry-After", "1")
            self._refuse(429, "rate-limited", "too many connection attempts; back off")
            return
        await super().get(*args, **kwargs)

    def _request_summary(self) -> str:
        # Tornado's log lines name the request by its URI, which may carry ?token=.
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Tornado's version logs repr(request), whose uri holds the ?token=.
        if isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)
            return
        log.error("uncaught exception in %s", self._request_summary(), exc_info=(typ, value, tb))

    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        cookie = self.get_cookie("access_token")
        if cookie:
            return cookie
        return self.get_query_argument("token", None)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self.node.metrics.handshake_refusals.labels(reason).inc()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": reason, "message": message}})

    def check_origin(self, origin: str) -> bool:
        # Called only when the client sent an Origin (browsers always do): refuse
        # cross-site websocket hijacking from pages that are not ours.
        allowed = origin in self.node.settings.allowed_origins
        if not allowed:
            self.node.metrics.handshake_refusals.labels("origin").inc()
        return allowed

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        for name in subprotocols:
            if name in CODECS:
                return name
        return None

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.node.settings.ws_compression else None

    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        conn = self.ws_connection
        compressed = getattr(conn, "_compressor", None) is not None
        self._fast_write = None if compressed else getattr(conn, "_write_frame", None)
        self.codec = CODECS.get(self.selected_subprotocol or "", JSON)
        settings = self.node.settings
        self.session = Session(
            self.claims.user_id,
            self.codec,
            self,
            out_buffer_max=settings.out_buffer_max_bytes,
            shed_ratio=settings.out_buffer_shed_ratio,
            metrics=self.node.metrics,
            catch_up=self.node.catch_up,
            token_issued_at_ms=self.claims.issued_at_ms,
            token_expires_at_s=self.claims.expires_at,
        )
        try:
            await self.node.open_session(self.session)
        except (PyMongoError, RedisError, OSError) as exc:
            # A store hiccup: a clean refusal the client retries with backoff, counted,
            # logged without a traceback (and never with the request's token).
            self.node.metrics.handshake_refusals.labels("store").inc()
            log.warning("socket not opened, store unavailable: %s", type(exc).__name__)
            self.session.disconnect(CloseCode.TRY_AGAIN_LATER, "store unavailable; retry shortly")

    async def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            self.session.heard = True
            await dispatch(self.node, self.session, message)

    def on_pong(self, data: bytes) -> None:
        if self.session is not None:
            self.session.heard = True

    def on_close(self) -> None:
        if self.session is not None:
            self.node.close_session(self.session)

    # -- Transport --------------------------------------------------------------------

    def write_frame(self, data: bytes | str, binary: bool) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if self._fast_write is None:
            # Compression negotiated: take the public path (it compresses).
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                self.write_message(data, binary=binary)
            return
        payload = data.encode() if isinstance(data, str) else data
        # Tornado's write_message wraps every frame in a new Task only to translate
        # an exception; at chat rates that Task was ~15% of the CPU (py-spy), so
        # frames go straight to the protocol's writer. The stream silences the
        # futures of writes cut short by a close.
        with contextlib.suppress(StreamClosedError):
            self._fast_write(True, 0x2 if binary else 0x1, payload)

    def keepalive_ping(self) -> None:
        conn = self.ws_connection
        if conn is not None and not conn.is_closing():
            with contextlib.suppress(StreamClosedError):
                conn.write_ping(b"")

    def pending_writes(self) -> int:
        """Bytes queued in the stream and not yet taken by the kernel."""
        stream = getattr(self.ws_connection, "stream", None)
        if stream is None:
            return 0
        # IOStream counts bytes queued and bytes written; their difference is the backlog.
        return int(stream._total_write_index - stream._total_write_done_index)


def chat_routes(node: Node) -> list[Any]:
    return [(r"/ws", ChatSocket, {"node": node})]

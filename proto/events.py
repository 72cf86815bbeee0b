"""Event names on the chat socket. Every frame is ``{"type": EVENT, "data": {...}}``."""

from __future__ import annotations

from typing import Final

# client -> server
PRIVATE_MESSAGE: Final = "private-message"
TYPING: Final = "typing"
MESSAGE_READ: Final = "message-read"
SYNC: Final = "sync"
PING: Final = "ping"
AUTH: Final = "auth"  # a fresh access token for this socket, before the current one expires

# server -> client
HELLO: Final = "hello"
INCOMING_MESSAGE: Final = "incoming-message"
MESSAGE_DELIVERED: Final = "message-delivered"
# MESSAGE_READ and TYPING go both ways
PRESENCE: Final = "presence"
SYNC_RESULT: Final = "sync-result"
PONG: Final = "pong"
ERROR: Final = "error"
CONNECTION_REQUEST: Final = "connection-request"
CONNECTION_ACCEPTED: Final = "connection-accepted"
AUTH_OK: Final = "auth-ok"

CLIENT_EVENTS: Final = frozenset({PRIVATE_MESSAGE, TYPING, MESSAGE_READ, SYNC, PING, AUTH})

# Frames a server may shed under backpressure; chat frames are never shed.
EPHEMERAL_EVENTS: Final = frozenset({TYPING, PRESENCE})

SUBPROTOCOL_JSON: Final = "devconnect.v1.json"
SUBPROTOCOL_MSGPACK: Final = "devconnect.v1.msgpack"

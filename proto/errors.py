"""The two error families of the chat protocol (STYLE 4; centrifuge).

``ProtocolError``: an ``error`` frame answering one client frame; the socket
stays open. ``Disconnect``: the server closes the socket with a close code.
Anything unexpected becomes ``internal`` and leaks no detail.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_FRAME = "bad-frame"  # not JSON / msgpack, or not an envelope {"type", "data"}
    UNKNOWN_EVENT = "unknown-event"  # "type" is not a client event
    INVALID_PAYLOAD = "invalid-payload"  # missing or wrong fields; details name them
    EMPTY_TEXT = "empty-text"  # text empty or only white space
    TEXT_TOO_LONG = "text-too-long"  # over the text limit (4,000 characters)
    UNKNOWN_RECIPIENT = "unknown-recipient"  # no such user
    INVALID_RECIPIENT = "invalid-recipient"  # yourself
    NOT_CONNECTED = "not-connected"  # no accepted connection between the two users
    NOT_FOUND = "not-found"  # conversation or message that is not yours
    INVALID_CURSOR = "invalid-cursor"
    TEMP_ID_REUSED = "temp-id-reused"  # this tempId was used before for another recipient
    RATE_LIMITED = "rate-limited"  # over the per-user message budget; nothing stored
    UNAVAILABLE = "unavailable"  # the store could not persist; retry with the same tempId
    UNAUTHENTICATED = "unauthenticated"  # an `auth` token that is invalid, expired or not yours
    INTERNAL = "internal"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008  # origin not allowed after upgrade, or protocol abuse
    MESSAGE_TOO_BIG = 1009  # a frame over 64 KiB
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # drain on deploy; the reason carries reconnectAfterMs
    # Slow consumer (outgoing buffer full), or the store could not open the session:
    # reconnect (with backoff) and sync.
    TRY_AGAIN_LATER = 1013
    LOGGED_OUT = 4001  # logout-all revoked this session's token
    TOKEN_EXPIRED = 4002  # the socket's access token expired without an `auth` frame renewing it
    TOO_MANY_SOCKETS = 4003  # the user already holds the most sockets a node allows


class ProtocolError(Exception):
    """An error reply to one frame; the socket stays open."""

    def __init__(
        self, code: ErrorCode, message: str, *, temp_id: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.temp_id = temp_id
        self.details = details


class Disconnect(Exception):
    """Close the socket with ``code`` and ``reason``."""

    def __init__(self, code: CloseCode, reason: str = "") -> None:
        super().__init__(reason or code.name)
        self.code = code
        self.reason = reason

"""The types of the message store: a stored message, a skipped position, the errors.

Shared by the writer (``chatd/store.py``), the reads (``chatd/streams.py``), the
node's fan-out and the sessions; ``chatd.store`` re-exports them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core import messages
from core.mongo import Doc
from proto.bus import StreamMessage
from proto.frames import chat_message, message_delivered


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class PersistError(Exception):
    """The message could not be stored; its sender gets ``unavailable`` and no ack."""


class TempIdReused(Exception):
    """The sender used this tempId before for a message to someone else: refused, not acked."""


@dataclass(slots=True)
class StoredMessage:
    message_id: str
    conversation_id: str
    from_user_id: str
    to_user_id: str
    text: str
    created_at_ms: int
    in_seq: int
    out_seq: int
    temp_id: str = ""
    origin_session: str = ""  # the socket that sent it: it gets the ack, not a copy
    duplicate: bool = False  # a retry of a message stored before: same id, not delivered again
    received_at: float = 0.0  # monotonic, when the frame arrived (for latency metrics)
    _wire: dict[str, Any] | None = field(default=None, repr=False)

    def ack(self, cursor: str) -> dict[str, Any]:
        """``message-delivered`` for the socket that sent this message (the only
        place that frame is built)."""
        return message_delivered(
            self.temp_id, self.message_id, self.conversation_id, self.created_at_ms, cursor
        )

    def wire(self) -> dict[str, Any]:
        """The message as clients see it (computed once, shared by every recipient)."""
        if self._wire is None:
            self._wire = chat_message(
                self.message_id,
                self.conversation_id,
                self.from_user_id,
                self.to_user_id,
                self.text,
                self.created_at_ms,
            )
        return self._wire

    @classmethod
    def from_doc(cls, doc: Doc) -> StoredMessage:
        message = messages.read(doc)
        return cls(
            message_id=message.id,
            conversation_id=message.conversation_id,
            from_user_id=message.from_user_id,
            to_user_id=message.to_user_id,
            text=message.text,
            created_at_ms=_ms(message.created_at),
            in_seq=message.in_seq,
            out_seq=message.out_seq,
            temp_id=message.temp_id,
        )

    @classmethod
    def from_bus(cls, message: StreamMessage) -> StoredMessage:
        """A message committed on another node, from its bus form (at one stream position)."""
        wire = message.event
        return cls(
            message_id=wire["messageId"],
            conversation_id=wire["conversationId"],
            from_user_id=wire["fromUserId"],
            to_user_id=wire["toUserId"],
            text=wire["text"],
            created_at_ms=wire["createdAt"],
            in_seq=message.seq if message.inbound else 0,
            out_seq=0 if message.inbound else message.seq,
            origin_session=message.origin_session or "",
        )


@dataclass(slots=True)
class Skipped:
    """A stream position filled by a tombstone: nothing to deliver, but readers move past it."""

    user_id: str
    inbound: bool
    seq: int


class _LRU(OrderedDict[str, Any]):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.capacity:
            self.popitem(last=False)


def _advance(heads: _LRU, user_id: str, seq: int) -> None:
    if heads.get(user_id, 0) < seq:
        heads.put(user_id, seq)


def _as_duplicate(message: StoredMessage, keep_text: bool = True) -> StoredMessage:
    return StoredMessage(
        message.message_id,
        message.conversation_id,
        message.from_user_id,
        message.to_user_id,
        message.text if keep_text else "",
        message.created_at_ms,
        message.in_seq,
        message.out_seq,
        message.temp_id,
        duplicate=True,
    )

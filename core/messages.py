"""The message document: its one writer (``new_document``) and reader (``read``).

chatd writes messages (``chatd/store.py``); restd reads history
(``domain/conversations.py``). Both go through here, so the field names and
their meaning live in one place:

- ``inKey`` / ``outKey``: ``"<user>:<12-digit seq>"``, the message's position
  in the recipient's inbound and the sender's outbound stream (unique indexes:
  a position is taken once, across nodes);
- ``dedupKey``: ``"<sender>:<tempId>"`` (unique: a resend is not stored twice);
- ``unreadKey``: present while the recipient has not read it (core/inbox.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bson import ObjectId

from core.ids import conversation_id
from core.inbox import unread_key
from core.mongo import Doc

SEQ_DIGITS = 12
SENT = "sent"  # status of a stored message until its recipient reads it


def stream_key(user_id: str, seq: int) -> str:
    return f"{user_id}:{seq:0{SEQ_DIGITS}d}"


def seq_of(key: str) -> int:
    return int(key.rsplit(":", 1)[1])


def new_document(
    from_user_id: str,
    to_user_id: str,
    temp_id: str,
    text: str,
    created_at: datetime,
    in_seq: int,
    out_seq: int,
) -> Doc:
    message_id = ObjectId()
    conv = conversation_id(from_user_id, to_user_id)
    return {
        "_id": message_id,
        "conversationId": conv,
        "fromUserId": from_user_id,
        "toUserId": to_user_id,
        "text": text,
        "attachments": [],
        "status": SENT,
        "createdAt": created_at,
        "tempId": temp_id,
        "inKey": stream_key(to_user_id, in_seq),
        "outKey": stream_key(from_user_id, out_seq),
        "dedupKey": f"{from_user_id}:{temp_id}",
        "unreadKey": unread_key(to_user_id, conv, message_id),
    }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    from_user_id: str
    to_user_id: str
    text: str
    attachments: list[str]
    status: str
    created_at: datetime  # UTC
    in_seq: int
    out_seq: int
    temp_id: str


def read(doc: Doc) -> Message:
    """A stored message document as fields (tolerant of documents written before
    a field existed: no stream keys read as position 0)."""
    oid = doc["_id"]
    created = _utc(doc.get("createdAt"))
    if created is None:
        created = oid.generation_time if isinstance(oid, ObjectId) else datetime.now(UTC)
    in_key, out_key = doc.get("inKey"), doc.get("outKey")
    return Message(
        id=str(oid),
        conversation_id=doc["conversationId"],
        from_user_id=doc["fromUserId"],
        to_user_id=doc["toUserId"],
        text=doc.get("text") or "",
        attachments=list(doc.get("attachments") or []),
        status=doc.get("status") or SENT,
        created_at=created,
        in_seq=seq_of(in_key) if isinstance(in_key, str) else 0,
        out_seq=seq_of(out_key) if isinstance(out_key, str) else 0,
        temp_id=doc.get("tempId") or "",
    )


def _utc(value: object) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (the embedded store may hand
    back naive datetimes or ISO strings)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None

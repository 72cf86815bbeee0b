"""One group commit's working data: the messages waiting, what their commit settles,
and how a refused write is read (which unique key it collided on).

Used only by the writer, ``chatd/store.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chatd.stored import Skipped, StoredMessage
from core.mongo import Doc

DUPLICATE_KEY = 11000


@dataclass(slots=True)
class Pending:
    from_user_id: str
    to_user_id: str
    temp_id: str
    text: str
    received_at: float
    origin_session: str
    future: asyncio.Future[StoredMessage]
    conflicts: int = 0


@dataclass
class Outcome:
    """What one commit settles: stored, holes to fill, each sender's result, retries."""

    stored: list[StoredMessage] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    results: list[tuple[Pending, StoredMessage | Exception]] = field(default_factory=list)
    retry: list[Pending] = field(default_factory=list)


def written_message(
    item: Pending, doc: Doc, position: tuple[int, int], now_ms: int
) -> StoredMessage:
    """A message just written, built from what we wrote, not parsed back from the document."""
    return StoredMessage(
        message_id=str(doc["_id"]),
        conversation_id=doc["conversationId"],
        from_user_id=item.from_user_id,
        to_user_id=item.to_user_id,
        text=item.text,
        created_at_ms=now_ms,
        in_seq=position[0],
        out_seq=position[1],
        temp_id=item.temp_id,
        origin_session=item.origin_session,
        received_at=item.received_at,
    )


def duplicate_field(err: dict[str, Any]) -> str | None:
    """Which unique key a duplicate-key write error is about (MongoDB and nx-27017 forms)."""
    if err.get("code") != DUPLICATE_KEY:
        return None
    pattern = err.get("keyPattern") or {}
    for name in ("dedupKey", "inKey", "outKey"):
        if name in pattern:
            return name
    text = str(err.get("errmsg", ""))
    for name, index_names in (
        ("dedupKey", ("dedupKey", "dedup_key")),
        ("inKey", ("inKey", "in_key")),
        ("outKey", ("outKey", "out_key")),
    ):
        if any(n in text for n in index_names):
            return name
    return None

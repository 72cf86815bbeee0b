"""Conversation summaries and unread counters: what a connect or a list reads instead of messages.

Reading messages to count or list them costs what the store holds, not what
the user asks for: the embedded store answers ``count_documents`` by decoding
every document of the collection, and even an indexed range grows with a
user's history. So chatd maintains, next to the messages it commits:

- ``conversations``, one document per pair (``_id`` is the conversation id):
  ``u0``/``u1`` are its two users (the lower id first, as in the id),
  ``last0``/``last1`` the last message each of them sent, ``unread0``/``unread1``
  how many messages each has not read, and ``sort0``/``sort1`` =
  ``"<user>|<id of the newest message>"``. Each ``sort`` field has a
  single-field index, so a user's conversations, newest first, are one
  bounded index range per side (``$max`` keeps it newest whatever order two
  nodes write in).
- ``unreadCounts``, one document per user: ``total`` unread messages.
- on each unread message, ``unreadKey = "<to>|<conversation>|<message id>"``
  (removed once read), a single-field index: the unread messages of one
  conversation, up to a given message, are one index range whose size is the
  number of unread messages, not the history.

Counters move by deltas (``$inc``), which commute, so two nodes and a reader
may update the same counter in any order. The commit adds, the read path
subtracts what it marked read and then re-counts the conversation from
``unreadKey`` (bounded by its unread messages), so a counter that drifted
(a node killed between committing messages and counting them) heals the next
time the user reads that conversation. Readers clamp at zero.

This module only builds filters, updates and views (no I/O), so chatd and
restd (asyncio driver) and the workers (synchronous driver) share one
definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from core.ids import conversation_members

Doc = dict[str, Any]

# Sorts after every 24-hex message id: the end of a "<prefix>|" range.
RANGE_END = "~"


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """What the counters need to know of one committed message."""

    message_id: ObjectId
    conversation_id: str
    from_user_id: str
    to_user_id: str
    text: str
    created_at_ms: int


def unread_key(to_user_id: str, conv_id: str, message_id: ObjectId | str) -> str:
    return f"{to_user_id}|{conv_id}|{message_id}"


def unread_range(to_user_id: str, conv_id: str, up_to: ObjectId | None = None) -> Doc:
    """Filter: the unread messages of ``conv_id`` to ``to_user_id`` (up to ``up_to``, inclusive)."""
    prefix = f"{to_user_id}|{conv_id}|"
    upper: Doc = {"$lte": f"{prefix}{up_to}"} if up_to is not None else {"$lt": prefix + RANGE_END}
    return {"unreadKey": {"$gt": prefix, **upper}}


def slot(conv_id: str, user_id: str) -> int:
    """0 for the conversation's lower user id, 1 for the higher."""
    members = conversation_members(conv_id)
    if members is None or user_id not in members:
        raise ValueError(f"{user_id} is not in conversation {conv_id}")
    return members.index(user_id)


def sort_range(user_id: str, side: int, before: str | None = None) -> Doc:
    """Filter: the user's conversations on one side, newer than nothing / older than ``before``."""
    prefix = f"{user_id}|"
    upper = f"{prefix}{before}" if before else prefix + RANGE_END
    return {f"sort{side}": {"$gt": prefix, "$lt": upper}}


def last_snapshot(message: InboxMessage) -> Doc:
    # Times as epoch ms: the embedded store turns a datetime given to $set into text.
    return {
        "id": message.message_id,
        "fromUserId": message.from_user_id,
        "toUserId": message.to_user_id,
        "text": message.text,
        "createdAtMs": message.created_at_ms,
    }


def commit_updates(messages: Iterable[InboxMessage]) -> tuple[list[UpdateOne], list[UpdateOne]]:
    """The conversation and unread-count updates for a batch of committed messages.

    One update per conversation and one per recipient, however many messages
    the batch holds for them (later messages in the batch win ``last``).
    """
    per_conv: dict[str, Doc] = {}
    per_user: dict[str, int] = {}
    for message in messages:
        conv = message.conversation_id
        low, high = conv.split("-", 1)
        sender_side = 0 if message.from_user_id == low else 1
        reader_side = 1 - sender_side
        update = per_conv.setdefault(
            conv,
            {"$setOnInsert": {"u0": low, "u1": high}, "$set": {}, "$inc": {}, "$max": {}},
        )
        update["$set"][f"last{sender_side}"] = last_snapshot(message)
        update["$inc"][f"unread{reader_side}"] = update["$inc"].get(f"unread{reader_side}", 0) + 1
        for side, user in ((0, low), (1, high)):
            key = f"{user}|{message.message_id}"
            if key > update["$max"].get(f"sort{side}", ""):
                update["$max"][f"sort{side}"] = key
        per_user[message.to_user_id] = per_user.get(message.to_user_id, 0) + 1
    conversations = [UpdateOne({"_id": conv}, u, upsert=True) for conv, u in per_conv.items()]
    counts = [
        UpdateOne({"_id": user}, {"$inc": {"total": n}}, upsert=True)
        for user, n in per_user.items()
    ]
    return conversations, counts


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    other_user_id: str
    last: Doc  # the newest of last0/last1 (see last_snapshot)
    last_received: Doc | None  # the last message the other user sent me
    unread: int  # by me
    other_unread: int  # by the other user
    sort_id: str  # hex id of the newest message: the paging cursor


def summary(doc: Doc, me: str) -> ConversationSummary | None:
    """A user's view of a conversation document, or None when it has no message yet."""
    side = 0 if doc.get("u0") == me else 1
    other = doc.get("u1") if side == 0 else doc.get("u0")
    lasts = [d for d in (doc.get("last0"), doc.get("last1")) if isinstance(d, dict)]
    if not lasts or not isinstance(other, str):
        return None
    last = max(lasts, key=lambda d: d["id"])
    sort_value = str(doc.get(f"sort{side}") or "")
    return ConversationSummary(
        conversation_id=str(doc["_id"]),
        other_user_id=other,
        last=last,
        last_received=doc.get(f"last{1 - side}")
        if isinstance(doc.get(f"last{1 - side}"), dict)
        else None,
        unread=max(0, int(doc.get(f"unread{side}") or 0)),
        other_unread=max(0, int(doc.get(f"unread{1 - side}") or 0)),
        sort_id=sort_value.rsplit("|", 1)[-1],
    )


def merge_sides(
    docs0: list[Doc], docs1: list[Doc], me: str, limit: int
) -> list[ConversationSummary]:
    """Two newest-first lists (one per side) into one, newest first, at most ``limit``."""
    found = [s for s in (summary(d, me) for d in [*docs0, *docs1]) if s is not None]
    found.sort(key=lambda s: s.sort_id, reverse=True)
    return found[:limit]

"""Data migrations run by ``devconnect migrate``, each once, recorded in ``migrations``.

- ``inbox-v1``: builds the conversation summaries and unread counters
  (core/inbox.py) and the ``unreadKey`` of unread messages from messages
  stored before chatd maintained them. It reads every message once, so it
  runs before the services start (``devconnect up`` does), not on a live
  store.

``recount_unread`` recomputes every unread counter from the ``unreadKey``
index (cost: the unread messages in the store, not all messages); it repairs
counts that a node killed mid-flush left short (``devconnect migrate
--recount-unread``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from core.inbox import InboxMessage, last_snapshot, unread_key
from core.mongo import CONVERSATIONS, MESSAGES, MIGRATIONS, UNREAD_COUNTS, Doc

log = logging.getLogger(__name__)

BATCH = 1000
INBOX_V1 = "inbox-v1"


def _ms(value: Any, fallback: Any) -> int:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    return int(fallback.generation_time.timestamp() * 1000)


async def apply_all(db: AsyncDatabase[Doc]) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied."""
    applied: list[str] = []
    if await db[MIGRATIONS].find_one({"_id": INBOX_V1}) is None:
        started = time.perf_counter()
        counted = await backfill_inbox(db)
        await db[MIGRATIONS].update_one(
            {"_id": INBOX_V1},
            {"$set": {"appliedAtMs": int(time.time() * 1000), "messages": counted}},
            upsert=True,
        )
        log.info(
            "migration %s applied",
            INBOX_V1,
            extra={"messages": counted, "seconds": round(time.perf_counter() - started, 2)},
        )
        applied.append(INBOX_V1)
    return applied


async def backfill_inbox(db: AsyncDatabase[Doc]) -> int:
    """Summaries, counters and unread keys from the messages as they stand."""
    conversations: dict[str, Doc] = {}
    totals: dict[str, int] = {}
    seen = 0
    marks: list[UpdateOne] = []
    cursor = db[MESSAGES].find(
        {"tombstone": {"$ne": True}},
        projection={
            "conversationId": 1,
            "fromUserId": 1,
            "toUserId": 1,
            "text": 1,
            "status": 1,
            "createdAt": 1,
            "unreadKey": 1,
        },
    )
    async for doc in cursor:
        conv = doc.get("conversationId")
        sender, recipient = doc.get("fromUserId"), doc.get("toUserId")
        if not isinstance(conv, str) or "-" not in conv or not sender or not recipient:
            continue
        seen += 1
        created_ms = _ms(doc.get("createdAt"), doc["_id"])
        message = InboxMessage(
            doc["_id"], conv, sender, recipient, doc.get("text") or "", created_ms
        )
        low, high = conv.split("-", 1)
        entry = conversations.setdefault(
            conv, {"_id": conv, "u0": low, "u1": high, "unread0": 0, "unread1": 0}
        )
        sender_side = 0 if sender == low else 1
        last = entry.get(f"last{sender_side}")
        if last is None or last["id"] < message.message_id:
            entry[f"last{sender_side}"] = last_snapshot(message)
        newest = entry.get("_newest")
        if newest is None or newest < message.message_id:
            entry["_newest"] = message.message_id
        if doc.get("status", "sent") == "sent":
            entry[f"unread{1 - sender_side}"] += 1
            totals[recipient] = totals.get(recipient, 0) + 1
            if not doc.get("unreadKey"):
                marks.append(
                    UpdateOne(
                        {"_id": doc["_id"]},
                        {"$set": {"unreadKey": unread_key(recipient, conv, doc["_id"])}},
                    )
                )
                if len(marks) >= BATCH:
                    await db[MESSAGES].bulk_write(marks, ordered=False)
                    marks = []
    if marks:
        await db[MESSAGES].bulk_write(marks, ordered=False)
    replaces: list[ReplaceOne[Doc]] = []
    for entry in conversations.values():
        newest = entry.pop("_newest")
        entry["sort0"] = f"{entry['u0']}|{newest}"
        entry["sort1"] = f"{entry['u1']}|{newest}"
        replaces.append(ReplaceOne({"_id": entry["_id"]}, entry, upsert=True))
        if len(replaces) >= BATCH:
            await db[CONVERSATIONS].bulk_write(replaces, ordered=False)
            replaces = []
    if replaces:
        await db[CONVERSATIONS].bulk_write(replaces, ordered=False)
    await _write_totals(db, totals)
    return seen


async def recount_unread(db: AsyncDatabase[Doc]) -> dict[str, int]:
    """Recompute every unread counter from the messages still marked unread."""
    per_conv: dict[tuple[str, int], int] = {}
    totals: dict[str, int] = {}
    cursor = db[MESSAGES].find(
        {"unreadKey": {"$gt": ""}}, projection={"unreadKey": 1, "toUserId": 1}
    )
    async for doc in cursor:
        to, conv, _ = str(doc["unreadKey"]).split("|", 2)
        low = conv.split("-", 1)[0]
        key = (conv, 0 if to == low else 1)
        per_conv[key] = per_conv.get(key, 0) + 1
        totals[to] = totals.get(to, 0) + 1
    updates: list[UpdateOne] = []
    async for doc in db[CONVERSATIONS].find({}, projection={"unread0": 1, "unread1": 1}):
        wanted = {
            f"unread{side}": per_conv.get((doc["_id"], side), 0)
            for side in (0, 1)
            if doc.get(f"unread{side}", 0) != per_conv.get((doc["_id"], side), 0)
        }
        if wanted:
            updates.append(UpdateOne({"_id": doc["_id"]}, {"$set": wanted}))
    if updates:
        await db[CONVERSATIONS].bulk_write(updates, ordered=False)
    async for doc in db[UNREAD_COUNTS].find({}, projection={"_id": 1}):
        totals.setdefault(doc["_id"], 0)
    await _write_totals(db, totals)
    return {"conversationsFixed": len(updates), "users": len(totals)}


async def _write_totals(db: AsyncDatabase[Doc], totals: dict[str, int]) -> None:
    ops = [
        ReplaceOne({"_id": user}, {"_id": user, "total": n}, upsert=True)
        for user, n in totals.items()
    ]
    for start in range(0, len(ops), BATCH):
        await db[UNREAD_COUNTS].bulk_write(ops[start : start + BATCH], ordered=False)

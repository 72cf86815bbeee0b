"""The offline-message sweep: who is due an "unread messages" email, and what it says.

chatd marks a recipient with no open socket in the sorted set
``Keys.offline_due()`` on their shard (``ZADD NX``: the first unseen message
fixes the time, now + the quiet period). Beat runs the sweep; each run claims
the users whose time has passed with one Lua script per batch (range by score
and remove, atomically, so two sweeps never take the same user) and queues one
``offline_messages`` task per user. A message arriving after the claim marks
the user again, so there is at most one email per quiet period, however long
the burst.

A claimed user still gets nothing when they are online (a presence claim that
counts, core/presence.py), have no unread messages left (reading on any device marks them read),
or turned the kind off. A crash between the claim and the queuing loses that
reminder only (the messages are safe in MongoDB; the next message marks again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from bson import ObjectId
from pymongo.database import Database

from core import inbox
from core.keys import Keys
from core.mongo import CONVERSATIONS, UNREAD_COUNTS, USERS, Doc
from core.presence import holders, live_leases

CLAIM_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""
# Conversations read (per side) to name the senders; the count itself is the counter.
CONVERSATION_SCAN_MAX = 100
SENDERS_NAMED_MAX = 3


def claim_due(client: redis.Redis, keys: Keys, now_s: float, batch: int) -> list[str]:
    """Remove and return up to ``batch`` users whose email time has come, on one shard."""
    script = client.register_script(CLAIM_DUE_LUA)
    users = script(keys=[keys.offline_due()], args=[now_s, batch])
    return [u.decode() if isinstance(u, bytes) else str(u) for u in users]


def is_online(client: redis.Redis, keys: Keys, user_id: str) -> bool:
    """chatd's presence rule (core/presence.py): any node's claim that still counts."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.presence(user_id))
    pipe.zrangebyscore(keys.node_leases(), now, "+inf")
    claims, leases = pipe.execute()
    return bool(holders(claims, live_leases(leases), now))


@dataclass(frozen=True)
class Digest:
    count: int
    newest_id: str
    sender_ids: list[str]  # newest sender first


def unread_digest(db: Database[Doc], user_id: str) -> Digest | None:
    """The user's unread total and who sent them, from the counters chatd keeps.

    Reads one counter and the user's newest conversations (core/inbox.py), never
    the messages, so a sweep costs the same whatever the store holds.
    """
    counts = db[UNREAD_COUNTS].find_one({"_id": user_id}) or {}
    total = max(0, int(counts.get("total") or 0))
    if total == 0:
        return None
    docs: list[Doc] = []
    for side in (0, 1):
        docs += list(
            db[CONVERSATIONS]
            .find(inbox.sort_range(user_id, side))
            .sort(f"sort{side}", -1)
            .limit(CONVERSATION_SCAN_MAX)
        )
    newest_first = inbox.merge_sides(docs, [], user_id, len(docs))
    unread = {s.conversation_id: s for s in newest_first if s.unread > 0}
    if not unread:
        return None  # read meanwhile: nothing to remind of
    received = [s.last_received["id"] for s in unread.values() if s.last_received]
    newest_id = max(received, default=None)
    return Digest(
        total,
        str(newest_id) if newest_id is not None else next(iter(unread.values())).sort_id,
        [s.other_user_id for s in unread.values()],
    )


def senders_text(db: Database[Doc], sender_ids: list[str]) -> str:
    """'Ann', 'Ann and Bo', 'Ann, Bo and Cy', 'Ann, Bo, Cy and 2 others'."""
    named = sender_ids[:SENDERS_NAMED_MAX]
    oids = [ObjectId(u) for u in named if ObjectId.is_valid(u)]
    found = {
        str(d["_id"]): d.get("name") or "Someone"
        for d in db[USERS].find({"_id": {"$in": oids}}, projection={"name": 1})
    }
    names = [found.get(u, "Someone") for u in named]
    others = len(sender_ids) - len(named)
    if others:
        names.append(f"{others} {'other' if others == 1 else 'others'}")
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"

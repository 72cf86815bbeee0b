"""Who may talk to whom: the one definition chatd and restd share.

A pair is connected when a ``connectionRequests`` document for its ``pairKey``
has status ``accepted``. Removing a connection sets it to ``removed``; a block
(``blocks``) removes the connection as well, so connected pairs are never blocked.

**Contact lists.** A user's connections are also kept as one document keyed by
the user (``contactLists``: ``{_id, ver, ids, builtAtMs}``), so that many sockets
opening at once read theirs in one ``$in`` by ``_id`` (the only ``$in`` the
embedded store serves from an index) instead of two index reads each. It is a
cache of ``connectionRequests``, never the authority: who may message whom is
still asked of ``connectionRequests`` (chatd/permissions.py).

- Every change to a pair's accepted state calls ``contacts_changed`` after its
  write: it bumps each user's ``ver`` and drops ``ids``, then rebuilds ``ids``
  from ``connectionRequests`` with a write that holds only if ``ver`` is still
  the one it bumped to. The rebuild of the last bump reads after every change
  before it, so a list that stands is never older than the last change.
- A reader that finds no list (a user from before lists existed, or a rebuild
  that did not finish) rebuilds it the same way, at the current ``ver``.
- A list older than ``CONTACT_LIST_TTL_S`` is rebuilt too, which bounds the one
  staleness left: a writer that stopped between its change and its bump.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.ids import pair_key
from core.mongo import CONNECTION_REQUESTS, CONTACT_LISTS, Doc

ACCEPTED = "accepted"
CONTACT_LIST_TTL_S = 24 * 3600
CONTACTS_LIMIT = 5000


async def are_connected(db: AsyncDatabase[Doc], user_a: str, user_b: str) -> bool:
    if user_a == user_b:
        return False
    found = await db[CONNECTION_REQUESTS].find_one(
        {"pairKey": pair_key(user_a, user_b), "status": ACCEPTED}, projection={"_id": 1}
    )
    return found is not None


async def connections_of(
    db: AsyncDatabase[Doc], user_id: str, limit: int = CONTACTS_LIMIT
) -> list[str]:
    """The users with an accepted connection to user_id (two single-field index reads)."""
    others: list[str] = []
    for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
        cursor = (
            db[CONNECTION_REQUESTS]
            .find({mine: user_id, "status": ACCEPTED}, projection={theirs: 1})
            .limit(limit)
        )
        others += [doc[theirs] async for doc in cursor]
    return others


async def contacts_changed(db: AsyncDatabase[Doc], users: Iterable[str]) -> None:
    """After a write that changed whether these users are connected: bump and rebuild
    each one's contact list (see the module's docstring)."""
    for user in dict.fromkeys(users):
        bumped = await db[CONTACT_LISTS].find_one_and_update(
            {"_id": user},
            {"$inc": {"ver": 1}, "$unset": {"ids": ""}},
            projection={"ver": 1},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        await _rebuild(db, user, int(bumped["ver"]) if bumped else 0)


async def contacts_of_many(db: AsyncDatabase[Doc], users: list[str]) -> list[list[str]]:
    """The contacts of each user, in order: one read by ``_id`` for all of them, and a
    rebuild from ``connectionRequests`` for each one without a current list."""
    wanted = list(dict.fromkeys(users))
    found = {
        str(doc["_id"]): doc
        async for doc in db[CONTACT_LISTS].find(
            {"_id": {"$in": wanted}}, projection={"ids": 1, "ver": 1, "builtAtMs": 1}
        )
    }
    oldest_ms = _now_ms() - CONTACT_LIST_TTL_S * 1000
    lists: dict[str, list[str]] = {}
    missing: list[tuple[str, Doc | None]] = []
    for user in wanted:
        doc = found.get(user)
        if doc is not None and _current(doc, oldest_ms):
            lists[user] = [str(i) for i in doc["ids"]]
        else:
            missing.append((user, doc))
    rebuilt = await asyncio.gather(*(_rebuild_missing(db, user, doc) for user, doc in missing))
    lists.update(zip((user for user, _ in missing), rebuilt, strict=True))
    return [lists[u] for u in users]


def _current(doc: Doc, oldest_ms: int) -> bool:
    return isinstance(doc.get("ids"), list) and int(doc.get("builtAtMs") or 0) >= oldest_ms


async def _rebuild_missing(db: AsyncDatabase[Doc], user: str, doc: Doc | None) -> list[str]:
    if doc is None:
        # No list yet: create the version it will be built at (a concurrent bump wins).
        try:
            await db[CONTACT_LISTS].insert_one({"_id": user, "ver": 0})
        except DuplicateKeyError:
            doc = await db[CONTACT_LISTS].find_one({"_id": user}, projection={"ver": 1})
    return await _rebuild(db, user, int(doc.get("ver") or 0) if doc else 0)


async def _rebuild(db: AsyncDatabase[Doc], user: str, ver: int) -> list[str]:
    """Read the user's connections and keep them as the list if ``ver`` still stands."""
    ids = await connections_of(db, user)
    await db[CONTACT_LISTS].update_one(
        {"_id": user, "ver": ver}, {"$set": {"ids": ids, "builtAtMs": _now_ms()}}
    )
    return ids


def _now_ms() -> int:
    return int(time.time() * 1000)

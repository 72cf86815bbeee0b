"""Who may talk to whom: the one definition chatd and restd share.

A pair is connected when a ``connectionRequests`` document for its ``pairKey``
has status ``accepted``. Removing a connection sets it to ``removed``; a block
(``blocks``) removes the connection as well, so connected pairs are never blocked.

**Contact lists.** A user's connections are also kept as one document keyed by
the user (``contactLists``: ``{_id, ver, ids, builtAtMs, changes}``), so that
many sockets opening at once read theirs in one ``$in`` by ``_id`` (the only
``$in`` the embedded store serves from an index) instead of two index reads
each. It is a cache of ``connectionRequests``, kept exact enough to decide
permissions from:

- Every write that may change whether two users are connected runs inside
  ``changing_contacts``: before it, each user's ``ver`` goes up, a token of the
  change (``"<until ms>:<random>"``) joins ``changes`` and ``ids`` is dropped;
  after it (always), the token leaves, ``ver`` goes up again, and the list is
  rebuilt from ``connectionRequests``.
- A rebuild writes ``ids`` only at the ``ver`` it read, and only when it read no
  change in flight. So ``ids`` exists only when it was read after the last
  change committed, and any later change drops it before writing.
- A reader that finds no list rebuilds it the same way; while a change is in
  flight it uses what it read without keeping it.
- A change that never finished (its writer died) counts as in flight until the
  time in its token, ``CHANGE_WINDOW_S`` on; then a reader removes that token
  and rebuilds (a late writer's own removal of it is then a no-op).
- Every list is rebuilt after ``CONTACT_LIST_TTL_S``, whatever happened.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.ids import pair_key
from core.mongo import CONNECTION_REQUESTS, CONTACT_LISTS, Doc

ACCEPTED = "accepted"
CONTACT_LIST_TTL_S = 24 * 3600
# A change to a pair is in flight for at most this long (its writer may have died).
CHANGE_WINDOW_S = 60
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


@asynccontextmanager
async def changing_contacts(db: AsyncDatabase[Doc], users: Iterable[str]) -> AsyncIterator[None]:
    """Around a write that may change whether these users are connected: no list of
    theirs stands while it is in flight, and theirs are rebuilt after it."""
    users = list(dict.fromkeys(users))
    token = f"{_now_ms() + CHANGE_WINDOW_S * 1000}:{secrets.token_hex(6)}"
    for user in users:
        await db[CONTACT_LISTS].update_one(
            {"_id": user},
            {"$inc": {"ver": 1}, "$unset": {"ids": ""}, "$addToSet": {"changes": token}},
            upsert=True,
        )
    try:
        yield
    finally:
        await _changed(db, users, {"$pull": {"changes": token}})


async def contacts_changed(db: AsyncDatabase[Doc], users: Iterable[str]) -> None:
    """After connectionRequests were written with no change in flight (a seed, a
    migration): rebuild these users' lists."""
    await _changed(db, list(dict.fromkeys(users)), {})


async def _changed(db: AsyncDatabase[Doc], users: list[str], update: Doc) -> None:
    for user in users:
        doc = await db[CONTACT_LISTS].find_one_and_update(
            {"_id": user},
            {"$inc": {"ver": 1}, "$unset": {"ids": ""}, **update},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        await _rebuild_missing(db, user, doc)


async def contacts_of_many(db: AsyncDatabase[Doc], users: list[str]) -> list[list[str]]:
    """The contacts of each user, in order: one read by ``_id`` for all of them, and a
    rebuild from ``connectionRequests`` for each one without a current list."""
    wanted = list(dict.fromkeys(users))
    found = {str(doc["_id"]): doc async for doc in db[CONTACT_LISTS].find({"_id": {"$in": wanted}})}
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
    """Rebuild the list from ``doc`` as read (None: there is none yet)."""
    lists = db[CONTACT_LISTS]
    if doc is None:
        # No list yet: create the version it will be built at (a concurrent bump wins).
        try:
            await lists.insert_one({"_id": user, "ver": 0})
            doc = {"_id": user, "ver": 0}
        except DuplicateKeyError:
            doc = await lists.find_one({"_id": user})
            if doc is None:
                return await connections_of(db, user)
    ver = int(doc.get("ver") or 0)
    now_ms = _now_ms()
    changes = [str(t) for t in doc.get("changes") or []]
    if any(_until_ms(t) > now_ms for t in changes):
        return await connections_of(db, user)  # a change in flight: use, do not keep
    if changes:
        # Changes whose writers died: remove their tokens at the version read.
        cleared = await lists.find_one_and_update(
            {"_id": user, "ver": ver},
            {"$pull": {"changes": {"$in": changes}}, "$inc": {"ver": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if cleared is None:
            return await connections_of(db, user)  # someone else moved it: do not keep
        ver = int(cleared["ver"])
    ids = await connections_of(db, user)
    await _keep(db, user, ver, ids)
    return ids


async def _keep(db: AsyncDatabase[Doc], user: str, ver: int, ids: list[str]) -> bool:
    """Keep ``ids`` as the user's list if ``ver`` still stands (no change since)."""
    kept = await db[CONTACT_LISTS].update_one(
        {"_id": user, "ver": ver}, {"$set": {"ids": ids, "builtAtMs": _now_ms()}}
    )
    return kept.matched_count == 1


def _until_ms(token: str) -> int:
    return int(token.partition(":")[0] or 0)


def _now_ms() -> int:
    return int(time.time() * 1000)

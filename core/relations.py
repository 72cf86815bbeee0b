"""Who may talk to whom: the one definition chatd and restd share.

A pair is connected when a ``connectionRequests`` document for its ``pairKey``
has status ``accepted``. Removing a connection sets it to ``removed``; a block
(``blocks``) removes the connection as well, so connected pairs are never blocked.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from core.ids import pair_key
from core.mongo import CONNECTION_REQUESTS, Doc

ACCEPTED = "accepted"


async def are_connected(db: AsyncDatabase[Doc], user_a: str, user_b: str) -> bool:
    if user_a == user_b:
        return False
    found = await db[CONNECTION_REQUESTS].find_one(
        {"pairKey": pair_key(user_a, user_b), "status": ACCEPTED}, projection={"_id": 1}
    )
    return found is not None


async def connections_of(db: AsyncDatabase[Doc], user_id: str, limit: int = 5000) -> list[str]:
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

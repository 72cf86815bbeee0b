"""The one writer of a user's prefs (``users.prefs``): PATCH /api/me and the unsubscribe link.

Prefs are a flat map edited as a merge-patch (RFC 7396): keys not sent keep their
value, ``None`` removes one. Two writers racing (a PATCH and a one-click
unsubscribe, or two tabs) must both land, so the write is a compare-and-swap on
``prefsVersion``: read the map and its version, write the whole merged map only
where the version is still the one read (and ``$inc`` it), and on a lost race read
again and retry, a bounded number of times.

Why not ``$set`` of each key through a dotted path (``prefs.emailMessages``),
which is atomic without a version: the embedded nx-27017 store reads a boolean
written that way back as 0 or 1. Normalising known boolean prefs on read would
not help the keys clients choose themselves (``{"darkMode": true}`` would come
back as 1), nor readers that test ``is False`` (the feed's ``discoverable``).
Whole-map writes keep every type on both stores, and the version also lets the
cap on the number of keys be checked against exactly the map being replaced.

Domain code: no tornado here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

from bson import ObjectId

from core.mongo import USERS, Doc
from domain.context import RestContext
from domain.errors import Conflict, NotFound, ValidationFailed

log = logging.getLogger(__name__)

VERSION_FIELD = "prefsVersion"
# Each lost race means another write landed, so a writer only runs out of attempts
# when dozens of writes to one user's prefs arrive at once (39 simultaneous writers
# on the embedded store needed at most about 10 attempts each).
WRITE_ATTEMPTS = 30
# Full-jitter exponential backoff between attempts, so racing writers spread out
# instead of colliding in lockstep; at most a few seconds in all.
BACKOFF_BASE_S = 0.002
BACKOFF_MAX_S = 0.25


def merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 on a flat map: ``None`` removes a key, any other value sets it."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def update_prefs(
    ctx: RestContext,
    user_id: str,
    patch: Mapping[str, Any],
    *,
    max_keys: int | None,
    also_set: Doc | None = None,
) -> dict[str, Any]:
    """Merge ``patch`` into the user's prefs atomically; returns the prefs written.

    ``max_keys`` caps the merged map; a change that would grow it past the cap is
    refused with a 422 naming ``prefs`` (a map already past it may still shrink or
    change values). ``also_set`` are other fields written in the same update, so a
    profile edit lands whole or not at all. Raises NotFound for a deleted user and
    Conflict when every attempt lost a race.
    """
    users = ctx.db[USERS]
    oid = ObjectId(user_id)
    for attempt in range(WRITE_ATTEMPTS):
        doc = await users.find_one({"_id": oid}, projection={"prefs": 1, VERSION_FIELD: 1})
        if doc is None:
            raise NotFound("This account no longer exists.", log_message=f"no user {user_id}")
        stored = doc.get("prefs")
        current = dict(stored) if isinstance(stored, dict) else {}
        merged = merge(current, patch)
        if max_keys is not None and len(merged) > max_keys and len(merged) > len(current):
            raise ValidationFailed(
                details=[
                    {
                        "field": "prefs",
                        "message": f"at most {max_keys} prefs in all; this change would make"
                        f" {len(merged)} (null removes one)",
                        "type": "too_many_prefs",
                    }
                ]
            )
        version = doc.get(VERSION_FIELD)
        # Users written before the version existed have none: the first write adds it.
        expected: Any = version if isinstance(version, int) else {"$exists": False}
        result = await users.update_one(
            {"_id": oid, VERSION_FIELD: expected},
            {"$set": {**(also_set or {}), "prefs": merged}, "$inc": {VERSION_FIELD: 1}},
        )
        if result.matched_count == 1:
            return merged
        # Another write got in between the read and this one (or the user is gone,
        # which the next read finds): read again and merge onto what is there now.
        await asyncio.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)))
    log.warning("prefs of %s: %d writes in a row lost a race", user_id, WRITE_ATTEMPTS)
    raise Conflict(
        "Your preferences are being changed elsewhere at the same time; try again.",
        code="prefs_conflict",
        log_message=f"prefs of {user_id}: compare-and-swap lost {WRITE_ATTEMPTS} times",
        retry_after_s=1,
    )

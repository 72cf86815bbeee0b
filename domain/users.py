"""Profiles and search: reading users, editing one's own profile, finding others.

Domain code: no tornado here (STYLE 1). Views never carry the email or the
password hash except ``me_view``, which only its owner receives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from core.ids import parse_object_id
from core.mongo import BLOCKS, USERS, Doc
from domain.context import RestContext
from domain.dates import as_utc
from domain.errors import NotFound
from domain.feed.hooks import feed_profile_changed
from domain.models import (
    MAX_PREFS,
    MeUser,
    ProfilePatch,
    PublicUser,
    SearchQuery,
    UserPage,
    UserSummary,
)
from domain.payments import entitlement
from domain.prefs import update_prefs

# Fields a profile view may read; the password hash is never fetched for a view.
PROFILE_PROJECTION = {"passwordHash": 0}
# Search text keeps words only: quotes and minus signs are operators to $text
# (and to the embedded server's FTS5), not something users mean to type.
_SEARCH_NOISE = re.compile(r"[^\w\s]+")


def summary_view(doc: Doc) -> UserSummary:
    return UserSummary(
        id=str(doc["_id"]),
        name=doc.get("name", ""),
        headline=doc.get("headline") or "",
        avatarUrl=doc.get("avatarUrl"),
    )


def public_view(doc: Doc) -> PublicUser:
    return PublicUser(
        **summary_view(doc).model_dump(),
        skills=list(doc.get("skills") or []),
        location=doc.get("location") or "",
        bio=doc.get("bio") or "",
        links=list(doc.get("links") or []),
        createdAt=as_utc(doc.get("createdAt")),
        badges=entitlement.badges(doc, datetime.now(UTC)),
    )


def me_view(doc: Doc) -> MeUser:
    return MeUser(
        **public_view(doc).model_dump(),
        email=doc["email"],
        prefs=dict(doc.get("prefs") or {}),
        membership=entitlement.view(doc, datetime.now(UTC)),
    )


async def find_user(ctx: RestContext, user_id: str) -> Doc | None:
    oid = parse_object_id(user_id)
    if oid is None:
        return None
    return await ctx.db[USERS].find_one({"_id": oid}, projection=PROFILE_PROJECTION)


async def require_me(ctx: RestContext, user_id: str) -> Doc:
    """The authenticated user's document; a token for a deleted user reads as 404."""
    doc = await find_user(ctx, user_id)
    if doc is None:
        raise NotFound("This account no longer exists.", log_message=f"no user {user_id}")
    return doc


async def summaries(ctx: RestContext, user_ids: Iterable[str]) -> dict[str, UserSummary]:
    """Public summaries of these users, by id: one ``$in`` on ``_id`` (served by the
    primary key on MongoDB and on the embedded store alike)."""
    oids = [oid for oid in {parse_object_id(u) for u in user_ids} if oid is not None]
    if not oids:
        return {}
    cursor = ctx.db[USERS].find(
        {"_id": {"$in": oids}}, projection={"name": 1, "headline": 1, "avatarUrl": 1}
    )
    return {str(doc["_id"]): summary_view(doc) async for doc in cursor}


async def is_blocked_by(ctx: RestContext, blocker: str, blocked: str) -> bool:
    found = await ctx.db[BLOCKS].find_one(
        {"blockKey": f"{blocker}>{blocked}"}, projection={"_id": 1}
    )
    return found is not None


async def blocked_either_way(ctx: RestContext, me: str) -> set[str]:
    """Everyone I blocked and everyone who blocked me."""
    hidden: set[str] = set()
    async for doc in ctx.db[BLOCKS].find({"blockerId": me}, projection={"blockedId": 1}):
        hidden.add(str(doc["blockedId"]))
    async for doc in ctx.db[BLOCKS].find({"blockedId": me}, projection={"blockerId": 1}):
        hidden.add(str(doc["blockerId"]))
    return hidden


async def get_public(ctx: RestContext, me: str, user_id: str) -> PublicUser:
    """Someone's public profile. A user who blocked me reads as absent, like a wrong id."""
    doc = await find_user(ctx, user_id)
    if doc is None or (user_id != me and await is_blocked_by(ctx, user_id, me)):
        raise NotFound("No such user.", log_message=f"user {user_id} not visible to {me}")
    return public_view(doc)


async def update_profile(ctx: RestContext, me: str, patch: ProfilePatch) -> MeUser:
    changes: dict[str, Any] = {}
    for name in patch.model_fields_set:
        value = getattr(patch, name)
        if name == "avatarUrl":
            value = str(value) if value is not None else None
        elif name == "links":
            value = [str(link) for link in value]
        elif name in ("headline", "location", "bio") and value is None:
            value = ""
        changes[name] = value
    if not changes:
        return me_view(await require_me(ctx, me))
    if "prefs" in changes:
        # The one prefs writer (domain/prefs.py): atomic against a concurrent
        # unsubscribe or another tab, with the other fields in the same update.
        prefs_patch = changes.pop("prefs")
        await update_prefs(ctx, me, prefs_patch, max_keys=MAX_PREFS, also_set=changes)
    else:
        await ctx.db[USERS].update_one({"_id": ObjectId(me)}, {"$set": changes})
    await feed_profile_changed(ctx, me)
    return me_view(await require_me(ctx, me))


async def search(ctx: RestContext, me: str, query: SearchQuery) -> UserPage:
    """Text search over name, skills and bio, with optional exact skill and location prefix.

    Ordered by ``_id`` so the cursor (the last id returned) is stable. Clauses
    are combined with an explicit ``$and``: the embedded nx-27017 server drops
    matches when an array-field equality sits next to other top-level clauses,
    and ``$and`` means the same on MongoDB.
    """
    hidden = await blocked_either_way(ctx, me)
    clauses: list[Doc] = [{"_id": {"$nin": [ObjectId(u) for u in hidden | {me}]}}]
    words = _SEARCH_NOISE.sub(" ", query.q).split()
    if words:
        clauses.append({"$text": {"$search": " ".join(words)}})
    if query.skill:
        clauses.append({"skills": " ".join(query.skill.split()).casefold()})
    if query.location:
        clauses.append({"location": {"$regex": "^" + re.escape(query.location), "$options": "i"}})
    if query.cursor:
        clauses.append({"_id": {"$gt": ObjectId(query.cursor)}})
    cursor = (
        ctx.db[USERS]
        .find({"$and": clauses}, projection=PROFILE_PROJECTION)
        .sort("_id", 1)
        .limit(query.limit + 1)
    )
    docs = await cursor.to_list()
    items = [public_view(doc) for doc in docs[: query.limit]]
    next_cursor = items[-1].id if len(docs) > query.limit else None
    return UserPage(items=items, nextCursor=next_cursor)

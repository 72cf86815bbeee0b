"""The feed's reads from Mongo: relations, neighbourhoods, profiles and candidate pools.

Every query is on a single-field index (the embedded nx-27017 server serves no
query from a compound index's prefix) and bounded by a limit. Domain code: no
tornado. Statuses are spelled here rather than imported from
``domain.connections``, which imports this package's invalidation hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from core.ids import parse_object_id
from core.mongo import BLOCKS, CONNECTION_REQUESTS, USERS, Doc
from domain.dates import as_utc
from domain.feed.features import Person, split_location
from domain.feed.skills import normalize_skills, query_forms

ACCEPTED = "accepted"
PENDING = "pending"
REJECTED = "rejected"
# One user's own request history read per direction; the daily budget keeps it small.
HISTORY_MAX = 5000
# Documents fetched per `$in` query.
IN_CHUNK = 500
# Connections read per batch of people, whatever their number (bounds a hub's cost).
EDGES_READ_MAX = 60000

PERSON_PROJECTION = {
    "name": 1,
    "headline": 1,
    "avatarUrl": 1,
    "skills": 1,
    "location": 1,
    "geo": 1,
    "lastSeen": 1,
    "createdAt": 1,
    "prefs": 1,
}


@dataclass
class Relations:
    """The user's side of the graph: who is excluded from their feed and why."""

    friends: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    # Past requests between the two, whatever came of them: an interaction signal.
    history: dict[str, float] = field(default_factory=dict)

    def excluded(self, user_id: str) -> set[str]:
        return {user_id, *self.friends, *self.pending, *self.rejected, *self.blocked}


async def relations(
    db: AsyncDatabase[Doc], user_id: str, now: datetime, rejected_hide_s: int, friends_max: int
) -> Relations:
    out = Relations()
    friends: dict[str, None] = {}
    hide_after = now - timedelta(seconds=rejected_hide_s)
    requests = db[CONNECTION_REQUESTS]
    for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
        cursor = requests.find(
            {mine: user_id}, projection={theirs: 1, "status": 1, "updatedAt": 1}
        ).limit(HISTORY_MAX)
        async for doc in cursor:
            other = doc[theirs]
            status = doc.get("status")
            if status == ACCEPTED:
                friends.setdefault(other, None)
            elif status == PENDING:
                out.pending.add(other)
            elif status == REJECTED:
                answered = as_utc(doc.get("updatedAt"))
                if answered is None or answered >= hide_after:
                    out.rejected.add(other)
            out.history[other] = out.history.get(other, 0.0) + 1.0
    out.friends = list(friends)[:friends_max]
    async for doc in db[BLOCKS].find({"blockerId": user_id}, projection={"blockedId": 1}):
        out.blocked.add(str(doc["blockedId"]))
    async for doc in db[BLOCKS].find({"blockedId": user_id}, projection={"blockerId": 1}):
        out.blocked.add(str(doc["blockerId"]))
    return out


async def connections_many(
    db: AsyncDatabase[Doc], people: Sequence[str], per_person_max: int
) -> dict[str, list[str]]:
    """Each person's accepted connections, at most ``per_person_max`` each."""
    found: dict[str, dict[str, None]] = {p: {} for p in people}
    requests = db[CONNECTION_REQUESTS]
    for start in range(0, len(people), IN_CHUNK):
        chunk = list(people[start : start + IN_CHUNK])
        for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
            cursor = requests.find(
                {"$and": [{mine: {"$in": chunk}}, {"status": ACCEPTED}]},
                projection={mine: 1, theirs: 1, "_id": 0},
            ).limit(EDGES_READ_MAX)
            async for doc in cursor:
                bucket = found[doc[mine]]
                if len(bucket) < per_person_max:
                    bucket.setdefault(doc[theirs], None)
    return {p: list(others) for p, others in found.items()}


def object_ids(ids: Iterable[str]) -> list[ObjectId]:
    return [oid for oid in (parse_object_id(i) for i in ids) if oid is not None]


async def profiles(db: AsyncDatabase[Doc], ids: Sequence[str]) -> dict[str, Doc]:
    out: dict[str, Doc] = {}
    for start in range(0, len(ids), IN_CHUNK):
        oids = object_ids(ids[start : start + IN_CHUNK])
        cursor = db[USERS].find({"_id": {"$in": oids}}, projection=PERSON_PROJECTION)
        async for doc in cursor:
            out[str(doc["_id"])] = doc
    return out


async def skill_pool(db: AsyncDatabase[Doc], skills: Iterable[str], limit: int) -> list[Doc]:
    """Some people holding one of these skills (the multikey ``skills`` index)."""
    forms = query_forms(skills)
    if not forms or limit <= 0:
        return []
    # $elemMatch: the multikey index on MongoDB; on the embedded store a scan
    # that stops at the limit (its plain equality on an array field finds nothing).
    cursor = db[USERS].find(
        {"skills": {"$elemMatch": {"$in": forms}}}, projection=PERSON_PROJECTION
    )
    return await cursor.limit(limit).to_list()


async def location_pool(db: AsyncDatabase[Doc], location: str, limit: int) -> list[Doc]:
    if not location or limit <= 0:
        return []
    cursor = db[USERS].find({"location": location}, projection=PERSON_PROJECTION)
    return await cursor.limit(limit).to_list()


async def newcomers(db: AsyncDatabase[Doc], limit: int) -> list[Doc]:
    """The latest sign-ups: ``_id`` order is creation order, served by the primary key."""
    if limit <= 0:
        return []
    cursor = db[USERS].find({}, projection=PERSON_PROJECTION).sort("_id", DESCENDING)
    return await cursor.limit(limit).to_list()


def discoverable(doc: Doc) -> bool:
    """False when the user turned discovery off (``prefs.discoverable: false``)."""
    prefs = doc.get("prefs") or {}
    return not (isinstance(prefs, dict) and prefs.get("discoverable") is False)


def _coords(doc: Doc) -> tuple[float, float] | None:
    geo: Any = doc.get("geo")
    if isinstance(geo, dict):
        lat, lon = geo.get("lat"), geo.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            return float(lat), float(lon)
    return None


def prepared(doc: Doc) -> dict[str, Any]:
    """What ranking reads of a profile, parsed once (the feature store keeps it in the card)."""
    location = str(doc.get("location") or "")
    city, country = split_location(location)
    parts = [p.strip() for p in location.split(",") if p.strip()]
    seen = as_utc(doc.get("lastSeen")) or as_utc(doc.get("createdAt"))
    if seen is None and isinstance(doc.get("_id"), ObjectId):
        seen = doc["_id"].generation_time
    return {
        "skills": sorted(normalize_skills(doc.get("skills") or [])),
        "city": city,
        "country": country,
        "cityLabel": parts[0] if parts else "",
        "countryLabel": parts[-1] if len(parts) > 1 else "",
        "coords": _coords(doc),
        "seen": seen.timestamp() if seen else None,
    }


def person(doc: Doc, now: datetime, newcomer: bool = False) -> Person:
    pre = doc.get("_pre") or prepared(doc)
    meta = {"city": pre["cityLabel"], "country": pre["countryLabel"]}
    if newcomer:
        meta["newcomer"] = "1"
    seen = pre["seen"]
    coords = pre["coords"]
    return Person(
        id=str(doc["_id"]),
        skills=frozenset(pre["skills"]),
        city=pre["city"],
        country=pre["country"],
        coords=(float(coords[0]), float(coords[1])) if coords else None,
        active_days_ago=(now.timestamp() - seen) / 86400 if seen is not None else None,
        meta=meta,
    )

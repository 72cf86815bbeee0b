"""Batch precompute: warm the feature store, then fill the feed cache for recently
active users, in bounded batches.

First every card and connection list is written to the feature store in one
pass (``FeatureStore.backfill``): the hooks keep them fresh as relations change,
and this nightly pass renews what nothing touched within the features' TTL, so
that the first page of a new user finds its neighbours' lists warm. Then users
are walked in ``_id`` order (the primary key, no extra index), a batch at a
time; each active one (seen, or signed up, within ``active_days``) gets a fresh
snapshot. One progress line per batch, one summary line at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from core.mongo import USERS, Doc
from core.runtime import Stores, open_stores
from core.settings import Settings
from domain.dates import as_utc
from domain.feed.service import FeedService

log = logging.getLogger(__name__)


def _active(doc: Doc, since: datetime) -> bool:
    seen = as_utc(doc.get("lastSeen")) or as_utc(doc.get("createdAt"))
    if seen is None and isinstance(doc.get("_id"), ObjectId):
        seen = doc["_id"].generation_time
    return seen is not None and seen >= since


async def precompute_with(
    stores: Stores,
    batch: int,
    active_days: float,
    max_users: int | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> int:
    service = FeedService(stores)
    warmed = await service.features.backfill(stores.settings.feed_neighbours_max, progress)
    since = datetime.now(UTC) - timedelta(days=active_days)
    started = time.monotonic()
    last: ObjectId | None = None
    done = scanned = batches = 0
    while max_users is None or done < max_users:
        query: Doc = {"_id": {"$gt": last}} if last is not None else {}
        docs = (
            await stores.db[USERS]
            .find(query, projection={"lastSeen": 1, "createdAt": 1})
            .sort("_id", 1)
            .limit(batch)
            .to_list()
        )
        if not docs:
            break
        last = docs[-1]["_id"]
        scanned += len(docs)
        batches += 1
        for doc in docs:
            if max_users is not None and done >= max_users:
                break
            if _active(doc, since):
                await service.refresh(str(doc["_id"]))
                done += 1
        progress(
            f"batch {batches}: scanned {scanned} users, precomputed {done} "
            f"({time.monotonic() - started:.1f}s)"
        )
    log.info(
        "feed precompute: %d cards and lists warmed, %d users precomputed, %d scanned, "
        "%d batches in %.1fs",
        warmed["people"],
        done,
        scanned,
        batches,
        time.monotonic() - started,
    )
    return done


async def precompute_active(
    settings: Settings,
    batch: int,
    active_days: float,
    max_users: int | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> int:
    stores = open_stores(settings)
    try:
        return await precompute_with(stores, batch, active_days, max_users, progress)
    finally:
        await stores.close()


async def recompute_user(stores: Stores, user_id: str) -> str:
    return await FeedService(stores).refresh(user_id)

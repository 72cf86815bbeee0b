"""What the feed showed and what came of it, in MongoDB (``feedEvents``): the
deployment's own training data for the learned ranker (domain/feed/learning.py).

One document per event, ``userId`` being the user whose feed it concerns:

- ``impression``: ``candidateId`` was shown at ``rank`` (0-based, across pages)
  under ``variant`` and ``modelVersion`` (null while the variant ranks with
  weights), with ``features``, the values it was ranked on, in
  ``features.FEATURES`` order;
- ``request``, ``accept``, ``reject``, ``withdraw``: what became of a
  connection request from ``userId`` to ``candidateId``.

Documents expire after ``core.mongo.FEED_EVENTS_TTL_S`` (a TTL index on
``at``). Recording never fails the request that caused it: a failed write is
logged and counted (``feed_events_total{kind="error"}``); the event is lost,
the product is not. Impressions are written off the page's path
(``soon``): measured with ``make bench-feed``, awaiting the write
added about 4.5 ms to a cached page's median.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from core.mongo import FEED_EVENTS, Doc
from domain.feed.features import FEATURES
from domain.feed.metrics import FeedMetrics
from domain.feed.models import FeedItem

log = logging.getLogger(__name__)

Outcome = Literal["request", "accept", "reject", "withdraw"]
# Background impression writes in flight at most, per process.
MAX_PENDING = 1000


class FeedEvents:
    def __init__(self, db: AsyncDatabase[Doc], metrics: FeedMetrics | None = None) -> None:
        self.collection = db[FEED_EVENTS]
        self.metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    def soon(self, write: Coroutine[Any, Any, None]) -> None:
        """Run ``write`` (one of the writes below) in the background; at most
        MAX_PENDING wait at once (past that, it is dropped and counted as an error)."""
        if len(self._pending) >= MAX_PENDING:
            write.close()
            if self.metrics:
                self.metrics.events.labels("error").inc()
            return
        task = asyncio.get_running_loop().create_task(write)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the background writes started so far."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def impressions(
        self,
        user_id: str,
        items: list[FeedItem],
        variant: str,
        offset: int,
        model_version: int | None = None,
    ) -> None:
        if not items:
            return
        now = datetime.now(UTC)
        docs = [
            {
                "kind": "impression",
                "userId": user_id,
                "candidateId": item.profile.id,
                "rank": offset + i,
                "variant": variant,
                "modelVersion": model_version,
                "score": item.score,
                "features": [float(item.explain.values.get(name, 0.0)) for name in FEATURES],
                "at": now,
            }
            for i, item in enumerate(items)
        ]
        await self._write("impression", docs)

    async def outcome(self, kind: Outcome, user_id: str, candidate_id: str) -> None:
        doc = {
            "kind": kind,
            "userId": user_id,
            "candidateId": candidate_id,
            "at": datetime.now(UTC),
        }
        await self._write(kind, [doc])

    async def _write(self, kind: str, docs: list[Doc]) -> None:
        try:
            await self.collection.insert_many(docs, ordered=False)
        except PyMongoError as exc:
            log.warning("feed events not recorded (%s x%d): %s", kind, len(docs), exc)
            if self.metrics:
                self.metrics.events.labels("error").inc()
            return
        if self.metrics:
            self.metrics.events.labels(kind).inc(len(docs))

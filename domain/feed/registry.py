"""The learned ranker's models in MongoDB (``feedModels``), and what a feed serves from them.

One document per trained model, promoted or not; ``_id`` is its version (1, 2,
...: the highest plus one, and a concurrent insert of the same version fails on
the primary key and takes the next):

- ``features``: the feature names in column order (``features.FEATURES`` then);
- ``model``: LightGBM's text dump (``learning.Model.dump``); dropped from models
  older than the newest ``feed_models_keep`` (never from a promoted or pinned
  one) so that nightly training does not grow the collection without end;
- ``metrics``: held-out NDCG@20 of this model and of the ranker in service at
  the time, on the same queries, with the counts they came from;
- ``window``: the training window (from, first and last impression, the cut
  between training and held-out impressions);
- ``createdAt``, ``status``, ``reason``, ``promotedAt``.

Statuses: ``promoted`` (serving, or was until a newer promotion superseded it),
``refused`` (did not beat the ranker in service), ``superseded``, and
``rolled_back`` (taken out of service by ``rollback``). The model in service is
the ``promoted`` one promoted last: a promotion writes the new status first and
supersedes the others after, so a reader between the two writes still gets one
answer.

``ServedModels`` is the feed's view: the promoted model, its version re-read at
most every ``feed_model_check_s`` (never per request), and versions pinned by a
variant, each loaded once (a version's text never changes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from core.mongo import FEED_MODELS, Doc
from domain.feed.features import FEATURES
from domain.feed.learning import Model

log = logging.getLogger(__name__)

PROMOTED = "promoted"
REFUSED = "refused"
SUPERSEDED = "superseded"
ROLLED_BACK = "rolled_back"
# Versions tried before giving up when other trainers keep taking the next one.
INSERT_ATTEMPTS = 5


class RegistryError(ValueError):
    """A version that cannot be served: unknown, its text pruned, or other features."""


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry without its text, for listings."""

    version: int
    status: str
    reason: str
    created_at: datetime | None
    promoted_at: datetime | None
    metrics: dict[str, Any]
    window: dict[str, Any]
    has_text: bool

    @classmethod
    def of(cls, doc: Doc) -> ModelInfo:
        return cls(
            version=int(doc["_id"]),
            status=str(doc.get("status", "")),
            reason=str(doc.get("reason", "")),
            created_at=doc.get("createdAt"),
            promoted_at=doc.get("promotedAt"),
            metrics=dict(doc.get("metrics") or {}),
            window=dict(doc.get("window") or {}),
            has_text=bool(doc.get("hasText")),
        )


class ModelRegistry:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.collection = db[FEED_MODELS]

    async def add(
        self,
        model: Model,
        *,
        status: str,
        reason: str,
        metrics: dict[str, Any],
        window: dict[str, Any],
    ) -> int:
        """Store a trained model (promoted or refused); returns its version."""
        now = datetime.now(UTC)
        doc: Doc = {
            "features": list(model.features),
            "model": model.dump(),
            "hasText": True,
            "metrics": metrics,
            "window": window,
            "createdAt": now,
            "status": status,
            "reason": reason,
            "promotedAt": now if status == PROMOTED else None,
        }
        for _ in range(INSERT_ATTEMPTS):
            version = await self._next_version()
            try:
                await self.collection.insert_one({"_id": version, **doc})
            except DuplicateKeyError:
                continue  # another trainer took this version
            if status == PROMOTED:
                await self._supersede_all_but(version, SUPERSEDED)
            return version
        raise RuntimeError(f"no free model version after {INSERT_ATTEMPTS} attempts")

    async def _next_version(self) -> int:
        last = await self.collection.find_one({}, projection={"_id": 1}, sort=[("_id", DESCENDING)])
        return int(last["_id"]) + 1 if last else 1

    async def _supersede_all_but(self, version: int, status: str, reason: str = "") -> None:
        update: Doc = {"status": status}
        if reason:
            update["reason"] = reason
        await self.collection.update_many(
            {"status": PROMOTED, "_id": {"$ne": version}}, {"$set": update}
        )

    async def promoted_version(self) -> int | None:
        """The version in service: one small indexed read (restd's periodic check)."""
        doc = await self.collection.find_one(
            {"status": PROMOTED},
            projection={"_id": 1, "promotedAt": 1},
            sort=[("promotedAt", DESCENDING)],
        )
        return int(doc["_id"]) if doc else None

    async def load(self, version: int) -> Model:
        """The model of a version, ready to score (RegistryError when it cannot serve)."""
        doc = await self.collection.find_one({"_id": version})
        if doc is None:
            raise RegistryError(f"no feed model version {version}")
        if tuple(doc.get("features") or ()) != FEATURES:
            raise RegistryError(
                f"feed model v{version} was trained on other features "
                f"({doc.get('features')}; now {list(FEATURES)})"
            )
        text = doc.get("model")
        if not isinstance(text, str):
            raise RegistryError(f"feed model v{version} has no text (pruned)")
        # Parsing a few hundred trees takes milliseconds: off the event loop.
        return await asyncio.to_thread(Model.load, text, {"version": version})

    async def rollback(self, version: int, reason: str = "") -> int | None:
        """Serve ``version`` (an earlier one, usually) from now on; returns the version it
        replaced, now ``rolled_back``. RegistryError when ``version`` cannot serve."""
        await self.load(version)  # refuses an unknown, pruned or incompatible version
        current = await self.promoted_version()
        if current == version:
            return current
        note = reason or (f"rolled back from v{current}" if current else "promoted by hand")
        await self.collection.update_one(
            {"_id": version},
            {"$set": {"status": PROMOTED, "promotedAt": datetime.now(UTC), "reason": note}},
        )
        await self._supersede_all_but(version, ROLLED_BACK, reason or f"rolled back to v{version}")
        log.warning("feed model rolled back: v%s -> v%d (%s)", current, version, note)
        return current

    async def models(self, limit: int = 50) -> list[ModelInfo]:
        """The newest models first, without their text."""
        cursor = (
            self.collection.find({}, projection={"model": 0}).sort("_id", DESCENDING).limit(limit)
        )
        return [ModelInfo.of(doc) async for doc in cursor]

    async def prune(self, keep: int, pinned: Collection[int] = ()) -> int:
        """Drop the text of models older than the newest ``keep``, except promoted and
        pinned ones; their metadata stays. Returns how many were pruned."""
        newest = await self.models(keep)
        if len(newest) < keep:
            return 0
        oldest_kept = newest[-1].version
        result = await self.collection.update_many(
            {
                "_id": {"$lt": oldest_kept, "$nin": list(pinned)},
                "status": {"$ne": PROMOTED},
                "hasText": True,
            },
            {"$unset": {"model": ""}, "$set": {"hasText": False}},
        )
        return int(result.modified_count)


class ServedModels:
    """The models a feed ranks with, without a Mongo read per request.

    ``promoted()`` re-reads the promoted version at most every ``check_s`` and
    loads its model when it changed; a failed read or load keeps what is served
    (logged) until the next check. ``pinned(version)`` loads a variant's version
    once; a missing one is looked for again after ``check_s``.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        check_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.check_s = check_s
        self.clock = clock
        self._promoted: tuple[int, Model] | None = None
        self._checked_at: float | None = None
        self._pinned: dict[int, tuple[Model | None, float]] = {}
        self._lock = asyncio.Lock()

    def _due(self, checked_at: float | None) -> bool:
        return checked_at is None or self.clock() - checked_at >= self.check_s

    async def promoted(self) -> tuple[int, Model] | None:
        if self._due(self._checked_at):
            async with self._lock:  # one check at a time; the others wait for its answer
                if self._due(self._checked_at):
                    await self._check()
        return self._promoted

    async def _check(self) -> None:
        try:
            version = await self.registry.promoted_version()
            served = self._promoted[0] if self._promoted else None
            if version != served:
                if version is None:
                    self._promoted = None
                    log.warning("no feed model promoted any more: ranking with weights")
                else:
                    self._promoted = (version, await self.registry.load(version))
                    log.info("feed model v%d in service (was %s)", version, served)
        except (PyMongoError, RegistryError) as exc:
            log.error("feed model check failed; still serving v%s: %s", self._served(), exc)
        self._checked_at = self.clock()

    def _served(self) -> int | None:
        return self._promoted[0] if self._promoted else None

    def _known(self, version: int) -> bool:
        """Loaded, or looked for and missing less than ``check_s`` ago."""
        found = self._pinned.get(version)
        return found is not None and (found[0] is not None or not self._due(found[1]))

    async def pinned(self, version: int) -> Model | None:
        if self._known(version):
            return self._pinned[version][0]
        async with self._lock:
            if self._known(version):  # another request loaded it while we waited
                return self._pinned[version][0]
            model: Model | None = None
            try:
                model = await self.registry.load(version)
                log.info("feed model v%d loaded for a pinned variant", version)
            except (PyMongoError, RegistryError) as exc:
                log.error("pinned feed model v%d unavailable (weights serve): %s", version, exc)
            self._pinned[version] = (model, self.clock())
            return model

"""The feed: rank a user's candidates, cache the ranked snapshot, serve pages.

A feed request's hops: handler (auth, parse ``FeedQuery``) → ``FeedService.page``
→ cached snapshot page, or on a miss ``compute`` (store reads → ``ranker``) and
``SnapshotCache.write`` → ``FeedPage``. Domain code: no tornado here.

What ranks a user's feed (``Ranking``) follows their variant: its weight set,
the promoted learned model, or a pinned version (``variants``). The promoted
version is re-read from the model registry at most every
``feed_model_check_s`` (``registry.ServedModels``), so a promotion or a
rollback reaches every running restd within that time without a restart, and
a first page whose snapshot another model ranked is ranked afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import orjson

from core.ids import pair_key
from core.mongo import CONNECTION_REQUESTS, Doc
from core.runtime import Stores
from domain.errors import Conflict, NotFound
from domain.feed import store
from domain.feed.cache import SnapshotCache, SnapshotPage, make_cursor, parse_cursor
from domain.feed.events import FeedEvents
from domain.feed.features import Person
from domain.feed.featurestore import FeatureStore
from domain.feed.graph import LocalGraph, Neighbourhood
from domain.feed.learning import Model
from domain.feed.metrics import FeedMetrics
from domain.feed.models import FeedEventBody, FeedItem, FeedPage
from domain.feed.ranker import Ranked, expansion_targets, graph_pool, rank
from domain.feed.registry import ModelRegistry, ServedModels
from domain.feed.variants import WEIGHTS, Variants
from domain.feed.weights import default_weights

log = logging.getLogger(__name__)

# 2: the header names the model that ranked the snapshot ("model").
SNAPSHOT_VERSION = 2
# Skill pools read per ranking: the user's skills beyond these add little reach.
SKILL_POOLS_MAX = 5
ATTRIBUTION_TTL_S = 30 * 24 * 3600
INTERACTIONS_TTL_S = 180 * 24 * 3600


def profile_view(doc: dict[str, object]) -> dict[str, object]:
    return {
        "id": str(doc["_id"]),
        "name": doc.get("name") or "",
        "headline": doc.get("headline") or "",
        "avatarUrl": doc.get("avatarUrl"),
        "skills": list(doc.get("skills") or []),  # type: ignore[call-overload]
        "location": doc.get("location") or "",
    }


@dataclass(frozen=True)
class Ranking:
    """What ranks one user's feed: their variant's weights, or a learned model."""

    variant: str
    weights: dict[str, float]
    version: int | None = None  # the model's; None when ranking with weights
    model: Model | None = None


class FeedService:
    def __init__(self, stores: Stores, metrics: FeedMetrics | None = None) -> None:
        s = stores.settings
        self.stores = stores
        self.settings = s
        self.metrics = metrics
        self.cache = SnapshotCache(stores.redis, stores.keys, s.feed_cache_ttl_s)
        self.variants = Variants(
            {**default_weights(), **s.feed_weights},
            s.feed_variants,
            s.feed_variant_salt,
            s.feed_variant_models,
        )
        self.features = FeatureStore(stores.db, stores.redis, self.cache.keys)
        self.events = FeedEvents(stores.db, metrics)
        self.models = ServedModels(ModelRegistry(stores.db), s.feed_model_check_s)

    async def ranking_for(self, user_id: str) -> Ranking:
        """The user's variant and what it ranks with; no Mongo read but the periodic check."""
        variant = self.variants.assign(user_id)
        weights = self.variants.weights_for(variant)
        choice = self.variants.model_for(variant)
        if choice == WEIGHTS:
            return Ranking(variant, weights)
        if isinstance(choice, int):
            pinned = await self.models.pinned(choice)
            if pinned is None:  # logged by ServedModels; looked for again after the check
                return Ranking(variant, weights)
            return Ranking(variant, weights, choice, pinned)
        promoted = await self.models.promoted()
        if promoted is None:
            return Ranking(variant, weights)
        return Ranking(variant, weights, promoted[0], promoted[1])

    # -- ranking ----------------------------------------------------------------

    async def compute(
        self, user_id: str, ranking: Ranking | None = None
    ) -> list[tuple[Ranked, Doc]]:
        """Rank the user's candidates as their variant says: (ranked, profile) pairs."""
        ranking = ranking or await self.ranking_for(user_id)
        s = self.settings
        db = self.stores.db
        now = datetime.now(UTC)
        me_docs = await self.features.cards([user_id])
        if user_id not in me_docs:
            raise NotFound("This account no longer exists.", log_message=f"no user {user_id}")
        me_doc = me_docs[user_id]
        me = store.person(me_doc, now)
        rel = await store.relations(db, user_id, now, s.feed_rejected_hide_s, s.feed_neighbours_max)
        excluded = rel.excluded(user_id)

        adjacency = await self.features.connections(rel.friends, s.feed_neighbours_max)
        nb = Neighbourhood(user_id, rel.friends, adjacency)
        targets = expansion_targets(nb, excluded, s.feed_expand_max)
        adjacency.update(await self.features.connections(targets, s.feed_neighbours_max))
        nb = Neighbourhood(user_id, rel.friends, adjacency)
        graph = LocalGraph(nb)

        # Shared pools: a few skills' holders, the same place, the latest sign-ups.
        location = str(me_doc.get("location") or "")
        pools: list[tuple[str, Callable[[], Awaitable[list[Doc]]]]] = [
            (f"skill:{skill}", partial(store.skill_pool, db, [skill], s.feed_skill_pool_max))
            for skill in sorted(me.skills)[:SKILL_POOLS_MAX]
        ]
        if location:
            pools.append(
                (
                    f"place:{location.casefold()}",
                    partial(store.location_pool, db, location, s.feed_location_pool_max),
                )
            )
        newcomer_ids = await self.features.pool(
            "newcomers", partial(store.newcomers, db, s.feed_newcomer_pool_max)
        )
        extra: dict[str, None] = {}
        for name, load in pools:
            for other in (await self.features.pool(name, load))[: s.feed_skill_pool_max]:
                if other not in excluded:
                    extra.setdefault(other, None)
        for other in newcomer_ids:
            if other not in excluded:
                extra.setdefault(other, None)
        extra_ids = list(extra)[: s.feed_candidate_cap]
        cap = max(0, s.feed_candidate_cap - len(extra_ids))
        pool = graph_pool(graph, nb, excluded | extra.keys(), cap)
        found = await self.features.cards(pool + extra_ids)
        newcomers = set(newcomer_ids)
        candidates: list[Person] = []
        by_id: dict[str, Doc] = {}
        for other in pool + extra_ids:
            doc = found.get(other)
            if doc is not None and store.discoverable(doc):
                candidates.append(store.person(doc, now, newcomer=other in newcomers))
                by_id[other] = doc

        interactions = dict(rel.history)
        raw = await self.stores.redis.for_user(user_id).hgetall(
            self.cache.keys.interactions(user_id)
        )
        for key, value in raw.items():
            other = key.decode() if isinstance(key, bytes) else key
            interactions[other] = interactions.get(other, 0.0) + float(value)
        ranked = rank(
            me,
            graph,
            candidates,
            ranking.weights,
            interactions,
            limit=s.feed_snapshot_size,
            model=ranking.model,
        )
        return [(r, by_id[r.id]) for r in ranked]

    async def refresh(self, user_id: str, ranking: Ranking | None = None) -> str:
        """Rank and store a new current snapshot; returns its id."""
        started = time.perf_counter()
        ranking = ranking or await self.ranking_for(user_id)
        ranked = await self.compute(user_id, ranking)
        items = [
            orjson.dumps(
                {
                    "profile": profile_view(doc),
                    "score": r.score,
                    "explain": {
                        "contributions": r.contributions,
                        "reasons": r.reasons,
                        "values": r.values or {},
                    },
                }
            )
            for r, doc in ranked
        ]
        header: dict[str, object] = {
            "v": SNAPSHOT_VERSION,
            "n": len(items),
            "at": int(time.time()),
            "model": ranking.version,
        }
        snapshot = await self.cache.write(user_id, header, items)
        if self.metrics:
            self.metrics.compute.observe(time.perf_counter() - started)
        return snapshot

    # -- serving ----------------------------------------------------------------

    async def page(self, user_id: str, cursor: str | None, limit: int) -> FeedPage:
        limit = min(limit, self.settings.feed_page_max)
        hit = True
        if cursor is None:
            ranking = await self.ranking_for(user_id)
            variant = ranking.variant
            offset = 0
            current = await self.cache.current(user_id)
            snapshot = current or ""
            got = None
            if current is not None:
                got = await self.cache.read(user_id, current, offset, limit + 1)
            # A snapshot another model (or the weights) ranked is stale once the model changed.
            if got is None or got.header.get("model") != ranking.version:
                hit = False
                snapshot = await self.refresh(user_id, ranking)
                got = await self.cache.read(user_id, snapshot, offset, limit + 1)
        else:
            variant = self.variants.assign(user_id)
            parsed = parse_cursor(cursor)
            if parsed is None:
                raise Conflict("This feed cursor is not valid.", code="cursor_invalid")
            snapshot, offset = parsed
            got = await self.cache.read(user_id, snapshot, offset, limit + 1)
        if got is None:
            raise Conflict(
                "This feed page has expired; load the feed again from the start.",
                code="cursor_expired",
                log_message=f"snapshot {snapshot} of {user_id} gone",
            )
        return self._served(user_id, variant, snapshot, offset, limit, got, hit)

    def _served(
        self,
        user_id: str,
        variant: str,
        snapshot: str,
        offset: int,
        limit: int,
        got: SnapshotPage,
        hit: bool,
    ) -> FeedPage:
        items = [FeedItem.model_validate_json(item) for item in got.items[:limit]]
        more = len(got.items) > limit
        if self.metrics:
            self.metrics.pages.labels("hit" if hit else "miss").inc()
            self.metrics.impressions.labels(variant).inc(len(items))
        version = got.header.get("model")
        if items:
            self.events.soon(self.events.impressions(user_id, items, variant, offset, version))
        return FeedPage(
            items=items,
            nextCursor=make_cursor(snapshot, offset + limit) if more else None,
            variant=variant,
        )

    # -- events and invalidation ---------------------------------------------------

    async def record(self, user_id: str, event: FeedEventBody) -> None:
        if event.userId == user_id:
            raise Conflict("That is your own profile.", code="self_event")
        variant = self.variants.assign(user_id)
        keys = self.cache.keys
        redis = self.stores.redis
        for a, b in ((user_id, event.userId), (event.userId, user_id)):
            client = redis.for_user(a)
            await client.hincrby(keys.interactions(a), b, 1)
            await client.expire(keys.interactions(a), INTERACTIONS_TTL_S)
        if event.type == "profile_view":
            if self.metrics:
                self.metrics.profile_views.labels(variant).inc()
            return
        client = redis.for_user(user_id)
        await client.hset(keys.attribution(user_id), event.userId, variant)
        await client.expire(keys.attribution(user_id), ATTRIBUTION_TTL_S)
        if self.metrics:
            self.metrics.requests.labels(variant).inc()

    async def relation_changed(self, user_a: str, user_b: str) -> None:
        """A connection, request or block between the two changed: both feeds are stale.

        Also where an accepted request sent from the feed is counted, for the
        variant of the user who sent it.
        """
        await self.cache.invalidate(user_a, user_b)
        await self.features.forget_connections(user_a, user_b)
        keys = self.cache.keys
        for sender, target in ((user_a, user_b), (user_b, user_a)):
            client = self.stores.redis.for_user(sender)
            variant = await client.hget(keys.attribution(sender), target)
            if variant is None:
                continue
            accepted = await self.stores.db[CONNECTION_REQUESTS].find_one(
                {"$and": [{"pairKey": pair_key(sender, target)}, {"status": store.ACCEPTED}]},
                projection={"_id": 1},
            )
            if accepted is not None:
                await client.hdel(keys.attribution(sender), target)
                if self.metrics:
                    name = variant.decode() if isinstance(variant, bytes) else variant
                    self.metrics.accepts.labels(name).inc()

    async def profile_changed(self, user_id: str) -> None:
        await self.cache.invalidate(user_id)
        await self.features.forget_card(user_id)

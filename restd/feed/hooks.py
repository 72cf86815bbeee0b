"""The feed's entry points for restd: one service per app, and the invalidation hooks.

restd's domain code calls ``feed_relation_changed`` / ``feed_profile_changed``
after it commits a connection, request, block or profile change (STYLE 14:
after the write). The service lives as long as the app's metrics object: a
weak map keyed by it, so each app (and each test) gets its own and nothing
outlives the app.
TODO(restd): give RestContext a ``feed`` field built in ``RestContext.build``
and drop the weak map.
"""

from __future__ import annotations

import logging
import weakref

from restd.context import RestContext
from restd.feed.metrics import FeedMetrics
from restd.feed.service import FeedService
from restd.metrics import RestMetrics

log = logging.getLogger(__name__)

_services: weakref.WeakKeyDictionary[RestMetrics, FeedService] = weakref.WeakKeyDictionary()


def feed_service(ctx: RestContext) -> FeedService:
    service = _services.get(ctx.metrics)
    if service is None:
        service = FeedService(ctx.stores, FeedMetrics(ctx.metrics.registry))
        _services[ctx.metrics] = service
    return service


async def feed_relation_changed(ctx: RestContext, user_a: str, user_b: str) -> None:
    """Never fails the caller's write: a stale feed is better than a failed request."""
    try:
        await feed_service(ctx).relation_changed(user_a, user_b)
    except Exception:
        log.exception("feed invalidation failed for %s/%s", user_a, user_b)


async def feed_profile_changed(ctx: RestContext, user_id: str) -> None:
    try:
        await feed_service(ctx).profile_changed(user_id)
    except Exception:
        log.exception("feed invalidation failed for %s", user_id)

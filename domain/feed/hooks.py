"""The feed's hooks for restd's domain code, called after a commit (STYLE 14).

restd calls ``feed_relation_changed`` / ``feed_profile_changed`` after it commits
a connection, request, block or profile change: the cached list is dropped at
once, and for a relation change a recompute of both users is queued on the
``recs`` queue (``workers.recs.recompute_user``) so their next feed is warm.
``feed_outcome`` records what became of a request, the learned ranker's labels.

The feature store is warmed from here too (domain/feed/featurestore.py): both
users' connection lists are re-read after a relation change, and a new
account's card and (empty) list are stored at sign-up, so a first page never
waits on those reads.
"""

from __future__ import annotations

import logging

from core.mongo import Doc
from core.tasks import RECS_RECOMPUTE_USER
from domain.context import RestContext
from domain.feed.events import Outcome
from domain.feed.service import FeedService

log = logging.getLogger(__name__)


def feed_service(ctx: RestContext) -> FeedService:
    return ctx.feed


async def feed_relation_changed(ctx: RestContext, user_a: str, user_b: str) -> None:
    """Never fails the caller's write: a stale feed is better than a failed request."""
    try:
        await ctx.feed.relation_changed(user_a, user_b)
    except Exception:
        log.exception("feed invalidation failed for %s/%s", user_a, user_b)
    try:
        await ctx.feed.features.warm_connections((user_a, user_b), ctx.settings.feed_neighbours_max)
    except Exception:
        log.exception("feed feature warm-up failed for %s/%s", user_a, user_b)
    for user in (user_a, user_b):  # best effort: TaskSender logs a broker failure
        await ctx.tasks.send(RECS_RECOMPUTE_USER, user)


async def feed_signed_up(ctx: RestContext, doc: Doc) -> None:
    """A new account: its card and empty connection list go into the feature store."""
    user_id = str(doc["_id"])
    try:
        await ctx.feed.features.remember_cards([doc])
        await ctx.feed.features.warm_connections((user_id,), ctx.settings.feed_neighbours_max)
    except Exception:
        log.exception("feed feature warm-up failed for new user %s", user_id)


async def feed_outcome(ctx: RestContext, kind: Outcome, sender: str, recipient: str) -> None:
    """What became of a connection request, as training data (domain/feed/events.py)."""
    try:
        await ctx.feed.events.outcome(kind, sender, recipient)
    except Exception:
        log.exception("feed outcome %s not recorded for %s/%s", kind, sender, recipient)


async def feed_profile_changed(ctx: RestContext, user_id: str) -> None:
    try:
        await ctx.feed.profile_changed(user_id)
    except Exception:
        log.exception("feed invalidation failed for %s", user_id)

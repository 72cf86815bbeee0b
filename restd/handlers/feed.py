"""``GET /api/feed`` and ``POST /api/feed/events``: the only feed module importing tornado."""

from __future__ import annotations

from domain.feed.hooks import feed_service
from domain.feed.models import FeedEventBody, FeedPage, FeedQuery
from restd.handlers.base import ApiHandler
from restd.openapi import Operation

TAG = "feed"


class FeedHandler(ApiHandler):
    operations = {
        "get": Operation(
            "People you may know: ranked, explained, paged from a cached snapshot",
            TAG,
            FeedPage,
            query=FeedQuery,
            errors=(404, 409),
        )
    }

    async def get(self) -> None:
        me = await self.require_user()
        query = self.parse_query(FeedQuery)
        self.write_model(await feed_service(self.ctx).page(me, query.cursor, query.limit))


class FeedEventsHandler(ApiHandler):
    operations = {
        "post": Operation(
            "Record a profile view or a request sent from the feed",
            TAG,
            None,
            status=204,
            body=FeedEventBody,
            errors=(403, 409),
        )
    }

    async def post(self) -> None:
        me = await self.require_user()
        event = self.parse_body(FeedEventBody)
        await feed_service(self.ctx).record(me, event)
        self.no_content()

"""The feed's wire models: ``GET /api/feed`` and ``POST /api/feed/events``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from domain.feed.cache import CURSOR_PATTERN
from domain.models import Input, ObjectIdStr, Query, UserSummary

PAGE_LIMIT_MAX = 50


class FeedQuery(Query):
    cursor: (
        Annotated[str, Field(pattern=CURSOR_PATTERN, examples=["0f3a9c2e1b4d5a6c.20"])] | None
    ) = None
    limit: Annotated[int, Field(ge=1, le=PAGE_LIMIT_MAX)] = 20


class FeedProfile(UserSummary):
    skills: list[str] = []
    location: str = ""


class Explain(BaseModel):
    """``contributions`` sum to the item's score: weight x value per feature when the
    variant ranks with weights; with a learned model, LightGBM's per-feature
    contributions (``pred_contrib``) plus a ``bias`` entry."""

    contributions: dict[str, float]
    reasons: list[str]
    # The feature values the score was computed from, each in [0, 1].
    values: dict[str, float] = {}


class FeedItem(BaseModel):
    profile: FeedProfile
    score: float
    explain: Explain


class FeedPage(BaseModel):
    items: list[FeedItem]
    nextCursor: str | None = None
    variant: str


class FeedEventBody(Input):
    """What the client saw happen in the feed: a profile opened, a request sent from it."""

    type: Literal["profile_view", "request_sent"]
    userId: ObjectIdStr

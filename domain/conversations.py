"""Conversations and history, read-only: chatd writes the messages.

A conversation is a connected pair; its id is ``core.ids.conversation_id``, the
same in chatd and restd. Only its two users may read it; for anyone else it
does not exist (404, not 403), so an id reveals nothing. Domain code: no tornado.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bson import ObjectId

from core import inbox, messages
from core.ids import conversation_members
from core.mongo import CONVERSATIONS, MESSAGES, Doc
from domain import users
from domain.context import RestContext
from domain.errors import NotFound
from domain.models import (
    ConversationList,
    ConversationQuery,
    ConversationView,
    HistoryQuery,
    MessagePage,
    MessageView,
)


def message_view(doc: Doc) -> MessageView:
    return MessageView.model_validate(messages.read(doc), from_attributes=True)


async def list_conversations(
    ctx: RestContext, me: str, query: ConversationQuery
) -> ConversationList:
    """A page of my conversations, newest message first.

    Reads the summaries chatd maintains (core/inbox.py): one bounded index range
    per side of the pair, whatever the number of conversations or messages.
    Conversations with someone blocked either way are left out.
    """
    conversations = ctx.db[CONVERSATIONS]
    want = query.limit + 1
    sides = await asyncio.gather(
        *(
            conversations.find(inbox.sort_range(me, side, query.before))
            .sort(f"sort{side}", -1)
            .limit(want)
            .to_list()
            for side in (0, 1)
        )
    )
    page = inbox.merge_sides(sides[0], sides[1], me, want)
    more = len(page) > query.limit
    page = page[: query.limit]
    hidden = await users.blocked_either_way(ctx, me) if page else set()
    people = await users.summaries(ctx, (s.other_user_id for s in page))
    items = [
        ConversationView(
            id=s.conversation_id,
            user=people[s.other_user_id],
            lastMessage=_last_view(s),
            unreadCount=s.unread,
        )
        for s in page
        if s.other_user_id in people and s.other_user_id not in hidden
    ]
    return ConversationList(items=items, nextCursor=page[-1].sort_id if more else None)


def _last_view(conversation: inbox.ConversationSummary) -> MessageView:
    last = conversation.last
    unread_by_recipient = (
        conversation.other_unread
        if last["toUserId"] == conversation.other_user_id
        else conversation.unread
    )
    return MessageView(
        id=str(last["id"]),
        conversationId=conversation.conversation_id,
        fromUserId=last["fromUserId"],
        toUserId=last["toUserId"],
        text=last.get("text") or "",
        # Read once its recipient has nothing unread in the conversation.
        status="read" if unread_by_recipient == 0 else messages.SENT,
        createdAt=datetime.fromtimestamp(int(last["createdAtMs"]) / 1000, UTC),
    )


async def history(ctx: RestContext, me: str, conv_id: str, query: HistoryQuery) -> MessagePage:
    """Newest first; ``nextCursor`` is the oldest id returned when more remain."""
    members = conversation_members(conv_id)
    if members is None or me not in members:
        raise NotFound("No such conversation.", log_message=f"{me} may not read {conv_id}")
    filt: Doc = {"conversationId": conv_id}
    if query.before:
        filt["_id"] = {"$lt": ObjectId(query.before)}
    docs = await ctx.db[MESSAGES].find(filt).sort("_id", -1).limit(query.limit + 1).to_list()
    page = [message_view(d) for d in docs[: query.limit]]
    return MessagePage(messages=page, nextCursor=page[-1].id if len(docs) > query.limit else None)

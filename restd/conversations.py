"""Conversations and history, read-only: chatd writes the messages.

A conversation is a connected pair; its id is ``core.ids.conversation_id``, the
same in chatd and restd. Only its two users may read it; for anyone else it
does not exist (404, not 403), so an id reveals nothing. Domain code: no tornado.
"""

from __future__ import annotations

import asyncio

from bson import ObjectId

from core.ids import conversation_id, conversation_members
from core.mongo import MESSAGES, Doc
from restd import users
from restd.connections import accepted_partners
from restd.context import RestContext
from restd.dates import required_utc
from restd.errors import NotFound
from restd.models import ConversationList, ConversationView, HistoryQuery, MessagePage, MessageView

# How many pairs' last messages are fetched at once.
CONVERSATION_FETCH_CONCURRENCY = 16
UNREAD = "sent"


def message_view(doc: Doc) -> MessageView:
    return MessageView(
        id=str(doc["_id"]),
        conversationId=doc["conversationId"],
        fromUserId=doc["fromUserId"],
        toUserId=doc["toUserId"],
        text=doc.get("text") or "",
        attachments=list(doc.get("attachments") or []),
        status=doc.get("status") or UNREAD,
        createdAt=required_utc(doc.get("createdAt"), doc["_id"].generation_time),
    )


async def list_conversations(ctx: RestContext, me: str) -> ConversationList:
    partners = await accepted_partners(ctx, me)
    messages = ctx.db[MESSAGES]
    gate = asyncio.Semaphore(CONVERSATION_FETCH_CONCURRENCY)

    async def latest(other: str) -> tuple[str, Doc, int] | None:
        conv = conversation_id(me, other)
        async with gate:
            last = await messages.find_one({"conversationId": conv}, sort=[("_id", -1)])
            if last is None:
                return None
            unread = await messages.count_documents(
                {"conversationId": conv, "toUserId": me, "status": UNREAD}
            )
        return other, last, unread

    found = [r for r in await asyncio.gather(*(latest(o) for o in partners)) if r is not None]
    found.sort(key=lambda r: r[1]["_id"], reverse=True)
    people = await users.summaries(ctx, (other for other, _, _ in found))
    return ConversationList(
        items=[
            ConversationView(
                id=last["conversationId"],
                user=people[other],
                lastMessage=message_view(last),
                unreadCount=unread,
            )
            for other, last, unread in found
            if other in people
        ]
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

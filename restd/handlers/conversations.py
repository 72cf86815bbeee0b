"""Conversation list and message history endpoints."""

from __future__ import annotations

from domain import conversations
from domain.models import ConversationList, ConversationQuery, HistoryQuery, MessagePage
from restd.handlers.base import ApiHandler
from restd.openapi import Link, Operation

TAG = "conversations"


class ConversationsHandler(ApiHandler):
    operations = {
        "get": Operation(
            "My conversations, most recent first, in pages",
            TAG,
            ConversationList,
            query=ConversationQuery,
            links=(
                Link(
                    "NewestConversationHistory",
                    "get",
                    "/api/conversations/{conversation_id}/messages",
                    {"conversation_id": "$response.body#/items/0/id"},
                    description="The messages of the most recent conversation",
                ),
            ),
        )
    }

    async def get(self) -> None:
        me = await self.require_user()
        query = self.parse_query(ConversationQuery)
        self.write_model(await conversations.list_conversations(self.ctx, me, query))


class MessagesHandler(ApiHandler):
    operations = {
        "get": Operation(
            "A conversation's messages, newest first (participants only)",
            TAG,
            MessagePage,
            query=HistoryQuery,
        )
    }

    async def get(self, conversation_id: str) -> None:
        me = await self.require_user()
        query = self.parse_query(HistoryQuery)
        self.write_model(await conversations.history(self.ctx, me, conversation_id, query))

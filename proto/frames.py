"""Builders of server frames, as plain dicts (cheap on the hot path).

Each builder's output matches the model of the same event in ``proto.models``;
the tests validate every frame they receive against those models.
"""

from __future__ import annotations

from typing import Any

from proto import events
from proto.errors import ErrorCode

Frame = dict[str, Any]


def frame(event: str, data: dict[str, Any]) -> Frame:
    return {"type": event, "data": data}


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The optional fields that have a value: a field without one is left out, not sent as null."""
    return {name: value for name, value in fields.items() if value is not None}


def hello(
    user_id: str,
    session_id: str,
    server_time_ms: int,
    cursor: str,
    unread: int,
    presence: list[dict[str, Any]],
    token_expires_at_s: int | None = None,
) -> Frame:
    return frame(
        events.HELLO,
        {
            "userId": user_id,
            "sessionId": session_id,
            "serverTime": server_time_ms,
            "cursor": cursor,
            "unreadCount": unread,
            "presence": presence,
            **_present({"tokenExpiresAt": token_expires_at_s}),
        },
    )


def chat_message(
    message_id: str,
    conversation_id: str,
    from_user_id: str,
    to_user_id: str,
    text: str,
    created_at_ms: int,
) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "conversationId": conversation_id,
        "fromUserId": from_user_id,
        "toUserId": to_user_id,
        "text": text,
        "createdAt": created_at_ms,
    }


def incoming_message(message: dict[str, Any], cursor: str) -> Frame:
    return frame(events.INCOMING_MESSAGE, {**message, "cursor": cursor})


def message_delivered(
    temp_id: str, message_id: str, conversation_id: str, created_at_ms: int, cursor: str
) -> Frame:
    return frame(
        events.MESSAGE_DELIVERED,
        {
            "tempId": temp_id,
            "messageId": message_id,
            "conversationId": conversation_id,
            "createdAt": created_at_ms,
            "cursor": cursor,
        },
    )


def message_read(
    conversation_id: str,
    up_to_message_id: str,
    reader_id: str,
    read_at_ms: int,
    unread_count: int | None = None,
) -> Frame:
    return frame(
        events.MESSAGE_READ,
        {
            "conversationId": conversation_id,
            "upToMessageId": up_to_message_id,
            "readerId": reader_id,
            "readAt": read_at_ms,
            **_present({"unreadCount": unread_count}),
        },
    )


def typing(from_user_id: str, state: str) -> Frame:
    return frame(events.TYPING, {"fromUserId": from_user_id, "state": state})


def presence(user_id: str, status: str, last_seen_ms: int | None) -> Frame:
    return frame(events.PRESENCE, presence_data(user_id, status, last_seen_ms))


def presence_data(user_id: str, status: str, last_seen_ms: int | None) -> dict[str, Any]:
    return {"userId": user_id, "status": status, "lastSeen": last_seen_ms}


def sync_result(messages: list[dict[str, Any]], cursor: str, has_more: bool) -> Frame:
    return frame(events.SYNC_RESULT, {"messages": messages, "cursor": cursor, "hasMore": has_more})


def pong(server_time_ms: int) -> Frame:
    return frame(events.PONG, {"serverTime": server_time_ms})


def auth_ok(expires_at_s: int) -> Frame:
    return frame(events.AUTH_OK, {"expiresAt": expires_at_s})


def error(code: ErrorCode, message: str, temp_id: str | None = None, details: Any = None) -> Frame:
    return frame(
        events.ERROR,
        {
            "code": code.value,
            "message": message,
            **_present({"tempId": temp_id, "details": details}),
        },
    )

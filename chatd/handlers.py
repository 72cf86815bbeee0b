"""Inbound events: one ``handle_*`` per client event, taking typed frames (STYLE 3).

``dispatch`` decodes and validates a raw frame once, at the edge, and turns
the two error families into protocol actions: a ``ProtocolError`` becomes an
``error`` frame (the socket stays open), a ``Disconnect`` closes the socket,
and anything unexpected becomes ``internal`` with no detail leaked.
"""

from __future__ import annotations

import logging
import time

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from chatd.limits import TokenBuckets
from chatd.node import Node
from chatd.session import Session
from chatd.store import PersistError, TempIdReused
from core.auth import TokenError
from core.ids import conversation_members, parse_object_id
from proto import frames
from proto.cursor import Cursor
from proto.errors import Disconnect, ErrorCode, ProtocolError
from proto.models import (
    Auth,
    AuthFrame,
    MessageRead,
    MessageReadFrame,
    PingFrame,
    PrivateMessage,
    PrivateMessageFrame,
    Sync,
    SyncFrame,
    Typing,
    TypingFrame,
    parse_client_frame,
)

log = logging.getLogger(__name__)


async def dispatch(node: Node, session: Session, raw: bytes | str) -> None:
    received_at = time.monotonic()
    try:
        frame = parse_client_frame(session.codec.decode(raw))
        if isinstance(frame, PrivateMessageFrame):
            await handle_private_message(node, session, frame.data, received_at)
        elif isinstance(frame, TypingFrame):
            await handle_typing(node, session, frame.data)
        elif isinstance(frame, MessageReadFrame):
            _spend(node, node.read_limits, session, "message-read")
            await handle_message_read(node, session, frame.data)
        elif isinstance(frame, SyncFrame):
            _spend(node, node.sync_limits, session, "sync")
            await handle_sync(node, session, frame.data)
        elif isinstance(frame, PingFrame):
            _spend(node, node.ping_limits, session, "ping")
            session.send(frames.pong(int(time.time() * 1000)))
        elif isinstance(frame, AuthFrame):
            await handle_auth(node, session, frame.data)
    except ProtocolError as exc:
        node.metrics.errors.labels(exc.code.value).inc()
        if exc.code is not ErrorCode.RATE_LIMITED:  # a flood must not become a log flood
            log.warning(
                "client error %s: %s",
                exc.code.value,
                exc.message,
                extra={"userId": session.user_id},
            )
        session.send(frames.error(exc.code, exc.message, exc.temp_id, exc.details))
    except Disconnect as exc:
        session.disconnect(exc.code, exc.reason)
    except Exception:
        node.metrics.errors.labels(ErrorCode.INTERNAL.value).inc()
        log.exception("unexpected error handling a frame", extra={"userId": session.user_id})
        session.send(frames.error(ErrorCode.INTERNAL, "internal error"))


async def handle_private_message(
    node: Node, session: Session, data: PrivateMessage, received_at: float
) -> None:
    node.metrics.messages_received.inc()
    sender, recipient, temp_id = session.user_id, data.to_user_id, data.temp_id
    if recipient == sender:
        raise ProtocolError(ErrorCode.INVALID_RECIPIENT, "cannot message yourself", temp_id=temp_id)
    if not node.message_limits.allow(sender):
        node.metrics.rate_limited.labels("private-message").inc()
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many messages; slow down", temp_id=temp_id)
    await _require_connected(node, sender, recipient, temp_id)
    try:
        stored = await node.store.submit(
            sender, recipient, temp_id, data.text, received_at, origin_session=session.id
        )
    except PersistError:
        raise ProtocolError(
            ErrorCode.UNAVAILABLE, "message not stored; retry with the same tempId", temp_id=temp_id
        ) from None
    except TempIdReused:
        raise ProtocolError(
            ErrorCode.TEMP_ID_REUSED,
            "this tempId was already used for a message to another user; use a new one",
            temp_id=temp_id,
        ) from None
    if stored.duplicate:
        # A retry of a message already stored: the same id, no second copy anywhere.
        session.send(stored.ack(str(session.cursor)))
    # Otherwise the node's fan-out has already delivered it and acked this session.


async def handle_auth(node: Node, session: Session, data: Auth) -> None:
    """A fresh access token for this socket: it then lives until the new expiry."""
    if not node.auth_limits.allow(session.user_id):
        node.metrics.rate_limited.labels("auth").inc()
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many auth frames; slow down")
    try:
        claims = await node.authenticator.authenticate(data.token)
    except TokenError:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "token invalid, expired or revoked; the socket keeps its own"
        ) from None
    except (RedisError, OSError):
        raise ProtocolError(ErrorCode.UNAVAILABLE, "could not check the token; retry") from None
    if claims.user_id != session.user_id:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "that token is for another user")
    session.token_issued_at_ms = claims.issued_at_ms
    session.token_expires_at_s = claims.expires_at
    node.expiries.track(session)
    session.send(frames.auth_ok(claims.expires_at))


async def handle_typing(node: Node, session: Session, data: Typing) -> None:
    if not node.typing_limits.allow(session.user_id):
        node.metrics.rate_limited.labels("typing").inc()
        return  # typing is ephemeral: excess is dropped quietly
    await _require_connected(node, session.user_id, data.to_user_id, None)
    node.send_to_user(data.to_user_id, frames.typing(session.user_id, data.state))


async def handle_message_read(node: Node, session: Session, data: MessageRead) -> None:
    members = conversation_members(data.conversation_id)
    up_to = parse_object_id(data.up_to_message_id)
    if members is None or session.user_id not in members or up_to is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such conversation")
    other = members[0] if members[1] == session.user_id else members[1]
    # Receipts only between connected users: a block or a removal ends them at once.
    await _require_connected(node, session.user_id, other, None)
    try:
        if not await node.inbox.message_in_conversation(up_to, data.conversation_id):
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such message in this conversation")
        read_at, unread = await node.inbox.mark_read(session.user_id, data.conversation_id, up_to)
    except PyMongoError:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "could not store the read receipt") from None
    receipt = frames.message_read(
        data.conversation_id, data.up_to_message_id, session.user_id, read_at
    )
    node.send_to_user(other, receipt)
    node.send_to_user(
        session.user_id,
        frames.message_read(
            data.conversation_id, data.up_to_message_id, session.user_id, read_at, unread
        ),
    )


async def handle_sync(node: Node, session: Session, data: Sync) -> None:
    cursor = Cursor.parse(data.cursor)
    limit = min(data.limit, node.settings.sync_limit_max)
    session.pause_live()
    try:
        read = await node.store.read_streams(session.user_id, cursor, limit)
    except PyMongoError:
        session.start_live(session.cursor)
        raise ProtocolError(ErrorCode.UNAVAILABLE, "sync failed; retry") from None
    # No await between sending the result and resuming live delivery from its cursor.
    session.send(
        frames.sync_result([m.wire() for m in read.messages], str(read.cursor), read.has_more)
    )
    session.finish_sync(read.cursor, read.has_more)


def _spend(node: Node, limits: TokenBuckets, session: Session, event: str) -> None:
    if not limits.allow(session.user_id):
        node.metrics.rate_limited.labels(event).inc()
        raise ProtocolError(ErrorCode.RATE_LIMITED, f"too many {event} frames; slow down")


async def _require_connected(node: Node, sender: str, recipient: str, temp_id: str | None) -> None:
    try:
        if await node.permissions.may_message(sender, recipient):
            return
        exists = await node.permissions.user_exists(recipient)
    except PyMongoError:
        raise ProtocolError(
            ErrorCode.UNAVAILABLE, "store unavailable; retry", temp_id=temp_id
        ) from None
    if not exists:
        raise ProtocolError(ErrorCode.UNKNOWN_RECIPIENT, "no such user", temp_id=temp_id)
    raise ProtocolError(
        ErrorCode.NOT_CONNECTED, "you are not connected with this user", temp_id=temp_id
    )

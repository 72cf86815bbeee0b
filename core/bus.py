"""Publishing live events to a user's chatd sockets, from any process.

The one way restd and workers reach a connected user (STYLE 14: called only
from domain actions, after the write). Publishing is best effort: MongoDB is
the source of truth and clients recover by ``sync``; a failed publish is
logged, never silently dropped, never raised into the caller's request.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from core.keys import Keys
from core.redis import RedisShards
from proto.bus import BusMessage, ConnectionChanged, Deliver, LogoutAll, encode_bus_message

log = logging.getLogger(__name__)


async def publish(redis: RedisShards, keys: Keys, message: BusMessage) -> bool:
    payload = encode_bus_message(message)
    try:
        await redis.for_user(message.user_id).publish(keys.user_channel(message.user_id), payload)
    except (RedisError, OSError) as exc:
        log.warning(
            "publish to user channel failed: %s",
            exc,
            extra={"kind": message.kind, "userId": message.user_id},
        )
        return False
    return True


async def deliver_event(
    redis: RedisShards,
    keys: Keys,
    user_id: str,
    event_type: str,
    data: dict[str, Any],
    origin: str = "restd",
) -> bool:
    """Push the frame ``{"type": event_type, "data": data}`` to every socket of user_id."""
    message = Deliver(userId=user_id, origin=origin, event={"type": event_type, "data": data})
    return await publish(redis, keys, message)


async def connection_changed(
    redis: RedisShards, keys: Keys, user_a: str, user_b: str, origin: str = "restd"
) -> None:
    """Tell chatd that the pair's permission to chat changed (accepted, removed, blocked)."""
    for user, other in ((user_a, user_b), (user_b, user_a)):
        await publish(
            redis,
            keys,
            ConnectionChanged(userId=user, otherUserId=other, origin=origin),
        )


async def logout_all(redis: RedisShards, keys: Keys, user_id: str, origin: str = "restd") -> None:
    await publish(redis, keys, LogoutAll(userId=user_id, origin=origin))

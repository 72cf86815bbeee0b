"""Telling others after a domain action: live events through chatd, email hooks.

Called only from domain actions, after their write (STYLE 14), so every
producer of a ``connection-request`` or ``connection-accepted`` event can be
found by grepping for these functions. The live push goes through
``core.bus`` (best effort: a failed publish is logged there and never fails
the request; clients recover by listing). The notification emails are queued
on the workers' ``email`` queue through ``core.tasks`` (best effort too: a
broker failure is logged by the sender, never raised).
"""

from __future__ import annotations

import logging
from typing import Any

from core import bus
from core.keys import Keys
from core.redis import RedisShards
from core.tasks import EMAIL_CONNECTION_ACCEPTED, EMAIL_CONNECTION_REQUEST, TaskSender
from proto import events

log = logging.getLogger(__name__)


async def connection_requested(
    redis: RedisShards,
    keys: Keys,
    request: dict[str, Any],
    origin: str,
    tasks: TaskSender | None = None,
) -> None:
    """A request was created: push it to its recipient, and queue the email."""
    to_user = str(request["toUserId"])
    await bus.deliver_event(redis, keys, to_user, events.CONNECTION_REQUEST, request, origin)
    await _queue_email(EMAIL_CONNECTION_REQUEST, request, tasks)


async def connection_accepted(
    redis: RedisShards,
    keys: Keys,
    request: dict[str, Any],
    origin: str,
    tasks: TaskSender | None = None,
) -> None:
    """A request was accepted: tell its sender, and tell chatd the pair may now chat."""
    sender, recipient = str(request["fromUserId"]), str(request["toUserId"])
    await bus.deliver_event(redis, keys, sender, events.CONNECTION_ACCEPTED, request, origin)
    await bus.connection_changed(redis, keys, sender, recipient, origin)
    await _queue_email(EMAIL_CONNECTION_ACCEPTED, request, tasks)


async def connection_ended(
    redis: RedisShards, keys: Keys, user_a: str, user_b: str, origin: str
) -> None:
    """A connection was removed or a block placed: chatd drops the pair's permission."""
    await bus.connection_changed(redis, keys, user_a, user_b, origin)


async def _queue_email(task: str, request: dict[str, Any], tasks: TaskSender | None) -> None:
    """Queue ``task`` for the request: "X wants to connect" to its recipient, or
    "X accepted your request" to its sender (workers/email.py reads the request)."""
    if tasks is None:
        log.debug("no task sender: %s not queued", task)
        return
    await tasks.send(task, str(request["id"]))

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

from typing import Any

from core import bus
from core.tasks import EMAIL_CONNECTION_ACCEPTED, EMAIL_CONNECTION_REQUEST
from domain.context import RestContext
from proto import events


async def connection_requested(ctx: RestContext, request: dict[str, Any]) -> None:
    """A request was created: push it to its recipient, and queue the email."""
    to_user = str(request["toUserId"])
    await bus.deliver_event(
        ctx.redis, ctx.keys, to_user, events.CONNECTION_REQUEST, request, ctx.bus_origin
    )
    await _queue_email(ctx, EMAIL_CONNECTION_REQUEST, request)


async def connection_accepted(ctx: RestContext, request: dict[str, Any]) -> None:
    """A request was accepted: tell its sender, and tell chatd the pair may now chat."""
    sender, recipient = str(request["fromUserId"]), str(request["toUserId"])
    origin = ctx.bus_origin
    await bus.deliver_event(
        ctx.redis, ctx.keys, sender, events.CONNECTION_ACCEPTED, request, origin
    )
    await bus.connection_changed(ctx.redis, ctx.keys, sender, recipient, origin)
    await _queue_email(ctx, EMAIL_CONNECTION_ACCEPTED, request)


async def connection_ended(ctx: RestContext, user_a: str, user_b: str) -> None:
    """A connection was removed or a block placed: chatd drops the pair's permission."""
    await bus.connection_changed(ctx.redis, ctx.keys, user_a, user_b, ctx.bus_origin)


async def _queue_email(ctx: RestContext, task: str, request: dict[str, Any]) -> None:
    """Queue ``task`` for the request: "X wants to connect" to its recipient, or
    "X accepted your request" to its sender (workers/email.py reads the request)."""
    await ctx.tasks.send(task, str(request["id"]))

"""Blocking: a block hides the users from each other and ends their connection.

One ``blocks`` document per direction (``blockKey`` = "blocker>blocked",
unique), so both users may block each other and unblocking is per direction.
Domain code: no tornado here.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from core.ids import pair_key
from core.mongo import BLOCKS
from domain import notify, users
from domain.connections import ACCEPTED, PENDING, end_pair, pair_lock
from domain.context import RestContext
from domain.errors import Conflict, NotFound
from domain.feed.hooks import feed_relation_changed


async def block(ctx: RestContext, me: str, other: str) -> None:
    if other == me:
        raise Conflict("You cannot block yourself.", code="self_block")
    if await users.find_user(ctx, other) is None:
        raise NotFound("No such user.")
    pair = pair_key(me, other)
    async with pair_lock(ctx, pair):
        with contextlib.suppress(DuplicateKeyError):  # already blocked: idempotent
            await ctx.db[BLOCKS].insert_one(
                {
                    "blockerId": me,
                    "blockedId": other,
                    "blockKey": f"{me}>{other}",
                    "pairKey": pair,
                    "createdAt": datetime.now(UTC),
                }
            )
        # Pending requests either way end too, so neither side sees a stale request.
        await end_pair(ctx, me, other, [ACCEPTED, PENDING])
    await notify.connection_ended(ctx, me, other)
    await feed_relation_changed(ctx, me, other)


async def unblock(ctx: RestContext, me: str, other: str) -> None:
    result = await ctx.db[BLOCKS].delete_one({"blockKey": f"{me}>{other}"})
    if not result.deleted_count:
        raise NotFound("You have not blocked this user.", code="not_blocked")
    await notify.connection_ended(ctx, me, other)
    await feed_relation_changed(ctx, me, other)

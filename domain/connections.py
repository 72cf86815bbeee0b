"""Connection requests and connections: the rules, the writes, then the events.

A pair is connected while one of its ``connectionRequests`` documents (same
``pairKey``) is ``accepted`` (core.relations). Writes for one pair are
serialised by a short Redis lock, so two concurrent requests cannot both pass
the "one pending at a time" rule. Events go out through domain.notify after the
write (STYLE 14). Domain code: no tornado here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from core import relations
from core.ids import conversation_id, pair_key, parse_object_id
from core.mongo import CONNECTION_REQUESTS, Doc
from core.ratelimit import Rate
from domain import notify, users
from domain.context import RestContext
from domain.dates import as_utc, required_utc
from domain.errors import Conflict, Forbidden, NotFound, TooManyRequests
from domain.feed.hooks import feed_outcome, feed_relation_changed
from domain.models import (
    ConnectionList,
    ConnectionRequestAnswer,
    ConnectionRequestBody,
    ConnectionRequestPage,
    ConnectionRequestQuery,
    ConnectionRequestView,
    ConnectionView,
    UserSummary,
)
from domain.payments import entitlement

PENDING = "pending"
ACCEPTED = "accepted"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
REMOVED = "removed"

DAY_S = 24 * 3600
PAIR_LOCK_TTL_MS = 5000
PAIR_LOCK_WAIT_S = 3.0
PAIR_LOCK_POLL_S = 0.02
# A pair's history is short (the cooldown and the daily budget bound it); read this much.
PAIR_HISTORY_MAX = 50

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

REQUEST_NOT_FOUND = "No such connection request."
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def request_view(doc: Doc, people: dict[str, UserSummary]) -> ConnectionRequestView:
    created = required_utc(doc.get("createdAt"), EPOCH)
    return ConnectionRequestView(
        id=str(doc["_id"]),
        fromUserId=doc["fromUserId"],
        toUserId=doc["toUserId"],
        status=doc["status"],
        message=doc.get("message") or "",
        createdAt=created,
        updatedAt=required_utc(doc.get("updatedAt"), created),
        fromUser=people.get(doc["fromUserId"]),
        toUser=people.get(doc["toUserId"]),
    )


async def _views(ctx: RestContext, docs: list[Doc]) -> list[ConnectionRequestView]:
    ids = {d["fromUserId"] for d in docs} | {d["toUserId"] for d in docs}
    people = await users.summaries(ctx, ids)
    return [request_view(d, people) for d in docs]


def _event(view: ConnectionRequestView) -> dict[str, Any]:
    return view.model_dump(mode="json")


@asynccontextmanager
async def pair_lock(ctx: RestContext, pair: str) -> AsyncIterator[None]:
    client = ctx.redis.for_user(pair)
    key = ctx.keys.pair_lock(pair)
    token = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PAIR_LOCK_WAIT_S
    while not await client.set(key, token, nx=True, px=PAIR_LOCK_TTL_MS):
        if loop.time() > deadline:
            raise Conflict(
                "Another change to this connection is in progress; retry.",
                code="busy",
                log_message=f"pair lock {pair} not acquired",
            )
        await asyncio.sleep(PAIR_LOCK_POLL_S)
    try:
        yield
    finally:
        await client.eval(_RELEASE_LUA, 1, key, token)


def daily_budget(ctx: RestContext, me: Doc) -> int:
    """Requests a user may send per day: more while a paid membership is active."""
    if entitlement.is_pro(me, _now()):
        return ctx.settings.connection_requests_per_day_pro
    return ctx.settings.connection_requests_per_day_free


def _cooldown_left_s(ctx: RestContext, history: list[Doc], me: str, now: datetime) -> int:
    cooldown = timedelta(seconds=ctx.settings.connection_request_cooldown_s)
    left = 0
    for doc in history:
        if doc["fromUserId"] == me and doc["status"] == REJECTED:
            answered = as_utc(doc.get("updatedAt")) or required_utc(doc.get("createdAt"), now)
            until = answered + cooldown
            left = max(left, int((until - now).total_seconds()) + 1 if until > now else 0)
    return left


async def create_request(
    ctx: RestContext, me: str, body: ConnectionRequestBody
) -> ConnectionRequestView:
    to = body.toUserId
    if to == me:
        raise Conflict("You cannot send a connection request to yourself.", code="self_request")
    me_doc = await users.require_me(ctx, me)
    target = await users.find_user(ctx, to)
    if target is None or await users.is_blocked_by(ctx, to, me):
        raise NotFound("No such user.", log_message=f"request to absent or blocking user {to}")
    if await users.is_blocked_by(ctx, me, to):
        raise Conflict("You blocked this user; unblock them first.", code="blocked")
    pair = pair_key(me, to)
    requests = ctx.db[CONNECTION_REQUESTS]
    async with pair_lock(ctx, pair):
        history = (
            await requests.find({"pairKey": pair}).sort("_id", -1).limit(PAIR_HISTORY_MAX).to_list()
        )
        if any(d["status"] == ACCEPTED for d in history):
            raise Conflict("You are already connected.", code="already_connected")
        if any(d["status"] == PENDING and d["fromUserId"] == me for d in history):
            raise Conflict("A request to this user is already pending.", code="request_pending")
        reverse = next(
            (d for d in history if d["status"] == PENDING and d["fromUserId"] == to), None
        )
        now = _now()
        if reverse is None:
            left_s = _cooldown_left_s(ctx, history, me, now)
            if left_s:
                raise Conflict(
                    "This user declined your last request; you can ask again later.",
                    code="cooldown",
                    details={"retryAfterSeconds": left_s},
                )
        decision = await ctx.limiter.hit(
            "requests-day", f"user:{me}", Rate(daily_budget(ctx, me_doc), DAY_S)
        )
        if not decision.allowed:
            raise TooManyRequests(
                "You have sent your connection requests for today.",
                code="daily_request_budget",
                retry_after_s=decision.retry_after_s,
            )
        status = ACCEPTED if reverse is not None else PENDING
        doc: Doc = {
            "fromUserId": me,
            "toUserId": to,
            "status": status,
            "message": body.message,
            "createdAt": now,
            "updatedAt": now,
            "pairKey": pair,
        }
        if reverse is None:
            doc["_id"] = (await requests.insert_one(doc)).inserted_id
        else:
            # Both asked: the earlier request is accepted and this one recorded as accepted.
            async with relations.changing_contacts(ctx.db, (me, to)):
                await requests.update_one(
                    {"_id": reverse["_id"], "status": PENDING},
                    {"$set": {"status": ACCEPTED, "updatedAt": now}},
                )
                reverse.update(status=ACCEPTED, updatedAt=now)
                doc["_id"] = (await requests.insert_one(doc)).inserted_id
    views = await _views(ctx, [doc] if reverse is None else [doc, reverse])
    if reverse is None:
        await notify.connection_requested(ctx, _event(views[0]))
    else:
        await notify.connection_accepted(ctx, _event(views[1]))
    await feed_relation_changed(ctx, me, to)
    await feed_outcome(ctx, "request", me, to)
    if reverse is not None:
        await feed_outcome(ctx, "accept", to, me)  # their earlier request, accepted by this one
    return views[0]


async def _request_for(ctx: RestContext, me: str, request_id: str) -> Doc:
    """The request if me is one of its two users; anyone else gets 404, so ids leak nothing."""
    oid = parse_object_id(request_id)
    doc = await ctx.db[CONNECTION_REQUESTS].find_one({"_id": oid}) if oid else None
    if doc is None or me not in (doc["fromUserId"], doc["toUserId"]):
        raise NotFound(REQUEST_NOT_FOUND, log_message=f"request {request_id} not visible to {me}")
    return doc


async def answer_request(
    ctx: RestContext, me: str, request_id: str, answer: ConnectionRequestAnswer
) -> ConnectionRequestView:
    doc = await _request_for(ctx, me, request_id)
    if doc["toUserId"] != me:
        raise Forbidden("Only the recipient can answer a request.", code="not_recipient")
    async with (
        pair_lock(ctx, doc["pairKey"]),
        relations.changing_contacts(ctx.db, (doc["fromUserId"], me)),
    ):
        updated = await ctx.db[CONNECTION_REQUESTS].find_one_and_update(
            {"_id": doc["_id"], "toUserId": me, "status": PENDING},
            {"$set": {"status": answer.status, "updatedAt": _now()}},
            return_document=ReturnDocument.AFTER,
        )
    if updated is None:
        raise Conflict("This request is no longer pending.", code="not_pending")
    (view,) = await _views(ctx, [updated])
    if answer.status == ACCEPTED:
        await notify.connection_accepted(ctx, _event(view))
    await feed_relation_changed(ctx, doc["fromUserId"], me)
    await feed_outcome(
        ctx, "accept" if answer.status == ACCEPTED else "reject", doc["fromUserId"], me
    )
    return view


async def withdraw_request(ctx: RestContext, me: str, request_id: str) -> ConnectionRequestView:
    doc = await _request_for(ctx, me, request_id)
    if doc["fromUserId"] != me:
        raise Forbidden("Only the sender can withdraw a request.", code="not_sender")
    updated = await ctx.db[CONNECTION_REQUESTS].find_one_and_update(
        {"_id": doc["_id"], "fromUserId": me, "status": PENDING},
        {"$set": {"status": WITHDRAWN, "updatedAt": _now()}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise Conflict("This request is no longer pending.", code="not_pending")
    (view,) = await _views(ctx, [updated])
    await feed_relation_changed(ctx, me, doc["toUserId"])
    await feed_outcome(ctx, "withdraw", me, doc["toUserId"])
    return view


async def list_requests(
    ctx: RestContext, me: str, query: ConnectionRequestQuery
) -> ConnectionRequestPage:
    field = "toUserId" if query.direction == "incoming" else "fromUserId"
    clauses: list[Doc] = [{field: me}]
    if query.status:
        clauses.append({"status": query.status})
    if query.cursor:
        clauses.append({"_id": {"$lt": ObjectId(query.cursor)}})
    docs = (
        await ctx.db[CONNECTION_REQUESTS]
        .find({"$and": clauses})
        .sort("_id", -1)
        .limit(query.limit + 1)
        .to_list()
    )
    items = await _views(ctx, docs[: query.limit])
    return ConnectionRequestPage(
        items=items, nextCursor=items[-1].id if len(docs) > query.limit else None
    )


async def accepted_partners(ctx: RestContext, me: str) -> dict[str, datetime]:
    """The users connected to me and since when; at most ``connections_list_max``.

    Two queries on single-field indexes rather than one ``$or``, which the
    embedded server would answer with a scan.
    """
    bound = ctx.settings.connections_list_max
    partners: dict[str, datetime] = {}
    requests = ctx.db[CONNECTION_REQUESTS]
    for mine, theirs in (("fromUserId", "toUserId"), ("toUserId", "fromUserId")):
        cursor = requests.find(
            {mine: me, "status": ACCEPTED}, projection={theirs: 1, "updatedAt": 1, "createdAt": 1}
        ).limit(bound)
        async for doc in cursor:
            since = as_utc(doc.get("updatedAt")) or required_utc(doc.get("createdAt"), EPOCH)
            other = doc[theirs]
            partners[other] = max(since, partners.get(other, since))
    return dict(sorted(partners.items(), key=lambda kv: kv[1], reverse=True)[:bound])


async def list_connections(ctx: RestContext, me: str) -> ConnectionList:
    partners = await accepted_partners(ctx, me)
    people = await users.summaries(ctx, partners)
    return ConnectionList(
        items=[
            ConnectionView(
                user=people[other], conversationId=conversation_id(me, other), connectedAt=since
            )
            for other, since in partners.items()
            if other in people
        ]
    )


async def end_pair(ctx: RestContext, me: str, other: str, statuses: list[str]) -> int:
    """Set the pair's requests in these statuses to ``removed``; returns how many changed."""
    async with relations.changing_contacts(ctx.db, (me, other)):
        result = await ctx.db[CONNECTION_REQUESTS].update_many(
            {"pairKey": pair_key(me, other), "status": {"$in": statuses}},
            {"$set": {"status": REMOVED, "updatedAt": _now()}},
        )
    return int(result.modified_count)


async def remove_connection(ctx: RestContext, me: str, other: str) -> None:
    if parse_object_id(other) is None or other == me:
        raise NotFound("You are not connected to this user.", code="not_connected")
    async with pair_lock(ctx, pair_key(me, other)):
        changed = await end_pair(ctx, me, other, [ACCEPTED])
    if not changed:
        raise NotFound("You are not connected to this user.", code="not_connected")
    await notify.connection_ended(ctx, me, other)
    await feed_relation_changed(ctx, me, other)

"""Accounts and sessions: signup, login with rate limits and lockout, refresh rotation.

A session is an access JWT (short-lived, checked by core.sessions in every
service) plus a refresh token that rotates on every use. Refresh tokens are
stored hashed, grouped in a family per login; presenting a token that was
already rotated means it was copied, so the whole family is revoked.

Except just after the rotation: two tabs of one browser (or a request retried
after a dropped response) send the same cookie at once, and only one of them
can spend it. Within ``refresh_reuse_grace_s`` of its rotation, a rotated
token is honoured again with a fresh token of the same family, at most
``GRACE_REISSUES_MAX`` times (Auth0's "reuse interval", Okta's grace period).
The grace trades a few seconds in which a copied token also works for not
logging out everyone who opens two tabs; past it, reuse revokes the family.

Domain code: no tornado here (STYLE 1).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core import bus
from core.auth import hash_refresh_token, new_refresh_token
from core.mongo import REFRESH_TOKENS, USERS, Doc
from core.ratelimit import Rate
from restd.context import RestContext
from restd.dates import as_utc
from restd.errors import Conflict, TooManyRequests, Unauthorized
from restd.models import LoginBody, SignupBody

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "The email or password is incorrect."
SESSION_ENDED = "Your session has ended; sign in again."
# Fresh tokens one rotated token may still get within the grace: enough for every
# tab of a browser waking at once; past it the copies look like a replay.
GRACE_REISSUES_MAX = 10


@dataclass(frozen=True, slots=True)
class Session:
    user: Doc
    access_token: str
    refresh_token: str


def _now() -> datetime:
    return datetime.now(UTC)


def email_subject(email: str) -> str:
    """Rate-limit and lockout subject for an email, without putting the address in Redis."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def ip_subject(ip: str) -> str:
    return f"ip:{ip}"


async def _spend(ctx: RestContext, bucket: str, subject: str, rate: Rate) -> None:
    decision = await ctx.limiter.hit(bucket, subject, rate)
    if not decision.allowed:
        raise TooManyRequests(
            log_message=f"rate limit {bucket} for {subject}", retry_after_s=decision.retry_after_s
        )


async def _open_session(ctx: RestContext, user: Doc, family_id: str | None = None) -> Session:
    token, token_hash = new_refresh_token()
    family = family_id or secrets.token_hex(16)
    now = _now()
    await ctx.db[REFRESH_TOKENS].insert_one(
        {
            "userId": str(user["_id"]),
            "familyId": family,
            "tokenHash": token_hash,
            "createdAt": now,
            "expiresAt": now + timedelta(seconds=ctx.settings.jwt_refresh_ttl_s),
            "usedAt": None,
            "revokedAt": None,
        }
    )
    access = ctx.issuer.issue_access(str(user["_id"]), session_id=family)
    return Session(user, access, token)


async def signup(ctx: RestContext, body: SignupBody, ip: str) -> Session:
    await _spend(ctx, "signup-ip", ip_subject(ip), ctx.limits.signup_ip)
    password_hash = await asyncio.to_thread(ctx.passwords.hash, body.password)
    now = _now()
    doc: Doc = {
        "name": body.name,
        "email": body.email,
        "passwordHash": password_hash,
        "skills": [],
        "headline": "",
        "location": "",
        "bio": "",
        "avatarUrl": None,
        "links": [],
        "prefs": {},
        "prefsVersion": 0,  # compare-and-swap of prefs (restd/prefs.py)
        "createdAt": now,
        "lastSeen": None,
    }
    try:
        result = await ctx.db[USERS].insert_one(doc)
    except DuplicateKeyError:
        raise Conflict("An account with this email already exists.", code="email_taken") from None
    doc["_id"] = result.inserted_id
    ctx.metrics.signups.inc()
    log.info("signup", extra={"userId": str(result.inserted_id)})
    return await _open_session(ctx, doc)


async def login(ctx: RestContext, body: LoginBody, ip: str) -> Session:
    """Every refusal for credentials reads the same whether or not the email exists."""
    subject = email_subject(body.email)
    try:
        await _spend(ctx, "login-ip", ip_subject(ip), ctx.limits.login_ip)
        await _spend(ctx, "login-email", subject, ctx.limits.login_email)
    except TooManyRequests:
        ctx.metrics.login_failures.labels("rate").inc()
        raise
    locked_s = await ctx.lockout.locked_for_s(subject)
    if locked_s:
        ctx.metrics.login_failures.labels("locked").inc()
        raise TooManyRequests(
            "Too many failed sign-in attempts; retry later.",
            code="login_locked",
            retry_after_s=locked_s,
            log_message=f"login locked for {subject}",
        )
    user = await ctx.db[USERS].find_one({"email": body.email})
    stored = user.get("passwordHash") if user else None
    ok = await asyncio.to_thread(ctx.passwords.verify, stored, body.password)
    if not ok or user is None:
        lock_s = await ctx.lockout.record_failure(subject)
        ctx.metrics.login_failures.labels("credentials").inc()
        raise Unauthorized(
            INVALID_CREDENTIALS,
            code="invalid_credentials",
            log_message=f"bad credentials for {subject} (lock {lock_s}s)",
        )
    await ctx.lockout.clear(subject)
    if stored and ctx.passwords.needs_rehash(stored):
        new_hash = await asyncio.to_thread(ctx.passwords.hash, body.password)
        await ctx.db[USERS].update_one({"_id": user["_id"]}, {"$set": {"passwordHash": new_hash}})
    return await _open_session(ctx, user)


async def refresh(ctx: RestContext, token: str | None) -> Session:
    """Rotate: the presented token is spent and a new one of the same family issued."""
    if not token:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="no refresh token")
    tokens = ctx.db[REFRESH_TOKENS]
    token_hash = hash_refresh_token(token)
    now = _now()
    # Atomic: of two requests presenting the same token, only one spends it.
    spent = await tokens.find_one_and_update(
        {"tokenHash": token_hash, "usedAt": None, "revokedAt": None},
        {"$set": {"usedAt": now}},
    )
    if spent is None:
        spent = await _reuse(ctx, token_hash, now)
    expires_at = as_utc(spent.get("expiresAt"))
    if expires_at is None or expires_at <= now:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh expired")
    user = await ctx.db[USERS].find_one({"_id": ObjectId(str(spent["userId"]))})
    if user is None:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="user gone")
    return await _open_session(ctx, user, family_id=str(spent["familyId"]))


async def _reuse(ctx: RestContext, token_hash: str, now: datetime) -> Doc:
    """A token that could not be spent: honoured again within the grace, else refused.

    Returns the token's record when the grace applies; raises otherwise, revoking
    the family when the token had been rotated (a replay).
    """
    tokens = ctx.db[REFRESH_TOKENS]
    old = await tokens.find_one({"tokenHash": token_hash})
    if old is None or old.get("usedAt") is None:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh refused")
    # usedAt went in through $set, which the embedded store reads back as naive text.
    used_at = as_utc(old.get("usedAt"))
    grace_s = ctx.settings.refresh_reuse_grace_s
    in_grace = used_at is not None and now - used_at <= timedelta(seconds=grace_s)
    if grace_s > 0 and in_grace and old.get("revokedAt") is None:
        # Counted atomically, so concurrent presentations each get their own number;
        # the filter on revokedAt loses to a revocation that got in first.
        counted = await tokens.find_one_and_update(
            {"_id": old["_id"], "revokedAt": None},
            {"$inc": {"graceReissues": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if counted is not None and int(counted.get("graceReissues", 0)) <= GRACE_REISSUES_MAX:
            log.info(
                "refresh token presented again within the grace; reissued",
                extra={"userId": old.get("userId"), "familyId": old.get("familyId")},
            )
            return counted
        if counted is None:  # revoked meanwhile
            raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh refused")
    await revoke_family(ctx, str(old["familyId"]))
    ctx.metrics.refresh_reuse.inc()
    log.warning(
        "refresh token reused; family revoked",
        extra={"userId": old.get("userId"), "familyId": old.get("familyId")},
    )
    raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh reused")


async def revoke_family(ctx: RestContext, family_id: str) -> None:
    await ctx.db[REFRESH_TOKENS].update_many(
        {"familyId": family_id, "revokedAt": None}, {"$set": {"revokedAt": _now()}}
    )


async def logout(ctx: RestContext, token: str | None) -> None:
    """End this browser's session: revoke its refresh family (the caller clears cookies)."""
    if not token:
        return
    found = await ctx.db[REFRESH_TOKENS].find_one({"tokenHash": hash_refresh_token(token)})
    if found is not None:
        await revoke_family(ctx, str(found["familyId"]))


async def logout_all(ctx: RestContext, user_id: str) -> None:
    """End every session of the user: access tokens, refresh tokens and open chat sockets."""
    await ctx.authenticator.revoke_all(user_id)
    await ctx.db[REFRESH_TOKENS].update_many(
        {"userId": user_id, "revokedAt": None}, {"$set": {"revokedAt": _now()}}
    )
    await bus.logout_all(ctx.redis, ctx.keys, user_id, origin=ctx.bus_origin)

"""Accounts and sessions: signup, login with rate limits and lockout, refresh rotation.

A session is an access JWT (short-lived, checked by core.sessions in every
service) plus a refresh token that rotates on every use. Refresh tokens are
stored hashed, grouped in a family per login; presenting a token that was
already rotated means it was copied, so the whole family is revoked.

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
        old = await tokens.find_one({"tokenHash": token_hash})
        if old is not None and old.get("usedAt") is not None:
            await revoke_family(ctx, str(old["familyId"]))
            ctx.metrics.refresh_reuse.inc()
            log.warning(
                "refresh token reused; family revoked",
                extra={"userId": old.get("userId"), "familyId": old.get("familyId")},
            )
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh refused")
    expires_at = as_utc(spent.get("expiresAt"))
    if expires_at is None or expires_at <= now:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="refresh expired")
    user = await ctx.db[USERS].find_one({"_id": ObjectId(str(spent["userId"]))})
    if user is None:
        raise Unauthorized(SESSION_ENDED, code="invalid_refresh", log_message="user gone")
    return await _open_session(ctx, user, family_id=str(spent["familyId"]))


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
    await bus.logout_all(ctx.redis, ctx.keys, user_id, origin=ctx.settings.node_id or "restd")

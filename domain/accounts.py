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

Login throttling (OWASP's device-cookie pattern, domain/devices.py): every
attempt spends from its address's budget; an attempt without a device cookie of
the account also spends from the (email, address) pair's and the email's
budgets and answers to the email's lock; one with such a cookie spends and
answers only to its own device's. All of it happens before the password is
hashed, so a refused attempt costs no argon2 run. Failures count against the
lock the attempt answered to, so strangers failing on someone's email lock out
strangers, never the owner's known devices.

Domain code: no tornado here (STYLE 1).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core import bus
from core.auth import HashingBusy, hash_refresh_token, new_refresh_token
from core.heads import record_new_accounts
from core.mongo import REFRESH_TOKENS, USERS, Doc
from core.ratelimit import Rate
from domain.context import RestContext
from domain.dates import as_utc
from domain.devices import Device
from domain.errors import Conflict, ServiceBusy, TooManyRequests, Unauthorized
from domain.feed.hooks import feed_signed_up
from domain.models import LoginBody, SignupBody

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "The email or password is incorrect."
SESSION_ENDED = "Your session has ended; sign in again."
# Fresh tokens one rotated token may still get within the grace: enough for every
# tab of a browser waking at once; past it the copies look like a replay.
GRACE_REISSUES_MAX = 10
# Retry-After of a 503 for want of a hashing slot: one argon2 run is well under a second.
HASHING_RETRY_AFTER_S = 1


@dataclass(frozen=True, slots=True)
class Session:
    user: Doc
    access_token: str
    refresh_token: str
    # Set when the caller just proved the password (signup, login): the handler
    # sends it as the device cookie (domain/devices.py).
    device_token: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def email_subject(email: str) -> str:
    """Rate-limit and lockout subject for an email, without putting the address in Redis."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def ip_subject(ip: str) -> str:
    return f"ip:{ip}"


def email_ip_subject(email: str, ip: str) -> str:
    return f"{email_subject(email)}:ip:{ip}"


def device_subject(device: Device) -> str:
    return f"device:{device.device_id}"


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


async def _hash(ctx: RestContext, password: str) -> str:
    try:
        password_hash = await ctx.passwords.hash_async(password)
    except HashingBusy as exc:
        ctx.metrics.password_hash_busy.inc()
        raise ServiceBusy(log_message=str(exc), retry_after_s=HASHING_RETRY_AFTER_S) from None
    ctx.metrics.password_hashes.labels("hash").inc()
    return password_hash


async def _verify(ctx: RestContext, stored: str | None, password: str) -> bool:
    try:
        ok = await ctx.passwords.verify_async(stored, password)
    except HashingBusy as exc:
        ctx.metrics.password_hash_busy.inc()
        ctx.metrics.login_failures.labels("busy").inc()
        raise ServiceBusy(log_message=str(exc), retry_after_s=HASHING_RETRY_AFTER_S) from None
    ctx.metrics.password_hashes.labels("verify").inc()
    return ok


async def signup(ctx: RestContext, body: SignupBody, ip: str) -> Session:
    # Spent before the hash: a refused signup costs no argon2 run.
    await _spend(ctx, "signup-ip", ip_subject(ip), ctx.limits.signup_ip)
    password_hash = await _hash(ctx, body.password)
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
        "prefsVersion": 0,  # compare-and-swap of prefs (domain/prefs.py)
        "createdAt": now,
        "lastSeen": None,
    }
    try:
        result = await ctx.db[USERS].insert_one(doc)
    except DuplicateKeyError:
        raise Conflict("An account with this email already exists.", code="email_taken") from None
    doc["_id"] = result.inserted_id
    await record_new_accounts(ctx.redis, ctx.keys, [str(result.inserted_id)])
    await feed_signed_up(ctx, doc)
    ctx.metrics.signups.inc()
    log.info("signup", extra={"userId": str(result.inserted_id)})
    session = await _open_session(ctx, doc)
    return _with_device(ctx, session, None)


def _with_device(ctx: RestContext, session: Session, device: Device | None) -> Session:
    """The session plus a fresh device cookie (a known device keeps its id)."""
    token = ctx.devices.issue(str(session.user["_id"]), device.device_id if device else None)
    return Session(session.user, session.access_token, session.refresh_token, token)


async def login(
    ctx: RestContext, body: LoginBody, ip: str, device_token: str | None = None
) -> Session:
    """Every refusal for credentials reads the same whether or not the email exists.

    Every budget and lock is checked before the password is hashed; see the
    module docstring for which ones an attempt answers to.
    """
    try:
        await _spend(ctx, "login-ip", ip_subject(ip), ctx.limits.login_ip)
    except TooManyRequests:
        ctx.metrics.login_failures.labels("rate").inc()
        raise
    user = await ctx.db[USERS].find_one({"email": body.email})
    device = ctx.devices.read(device_token)
    if device is not None and (user is None or device.user_id != str(user["_id"])):
        device = None  # a cookie of another account vouches for nothing here
    if device is not None:
        subject = device_subject(device)
        budgets = [("login-device", subject, ctx.limits.login_device)]
    else:
        subject = email_subject(body.email)
        budgets = [
            ("login-email-ip", email_ip_subject(body.email, ip), ctx.limits.login_email_ip),
            ("login-email", subject, ctx.limits.login_email),
        ]
    try:
        for bucket, who, rate in budgets:
            await _spend(ctx, bucket, who, rate)
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
    stored = user.get("passwordHash") if user else None
    ok = await _verify(ctx, stored, body.password)
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
        new_hash = await _hash(ctx, body.password)
        await ctx.db[USERS].update_one({"_id": user["_id"]}, {"$set": {"passwordHash": new_hash}})
    return _with_device(ctx, await _open_session(ctx, user), device)


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

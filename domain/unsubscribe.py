"""One-click unsubscribe (RFC 8058): the signed link in every mail's ``List-Unsubscribe``.

``GET`` only looks (mail scanners fetch links; a GET must change nothing);
``POST`` turns the token's email kind off in the user's prefs and records the
token's nonce in ``unsubscribeTokens`` so it works once. The pref is written
before the nonce: a crash between the two leaves a token that can be used
again to set the same pref, never a used token that changed nothing.

The token is the credential (core/emailprefs.py): no session, and anyone who
holds the mail may use it, which is what RFC 8058 asks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from bson import ObjectId
from pydantic import BaseModel, StringConstraints
from pymongo.errors import DuplicateKeyError

from core.emailprefs import PREF_KEYS, TokenInvalid, UnsubscribeClaims, UnsubscribeTokens
from core.mongo import UNSUBSCRIBE_TOKENS
from domain.context import RestContext
from domain.errors import BadRequest, Conflict
from domain.models import Query
from domain.prefs import update_prefs

MAX_TOKEN_CHARS = 1000


class UnsubscribeQuery(Query):
    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_CHARS)]


class UnsubscribePreview(BaseModel):
    """What a POST to the same URL would do."""

    kind: str
    pref: str
    used: bool


class UnsubscribeResult(BaseModel):
    kind: str
    pref: str
    unsubscribed: bool = True


def _claims(ctx: RestContext, token: str) -> UnsubscribeClaims:
    tokens = UnsubscribeTokens(ctx.settings.jwt_secret, ctx.settings.unsubscribe_token_max_age_s)
    try:
        claims = tokens.verify(token)
    except TokenInvalid as exc:
        raise BadRequest(
            "This unsubscribe link is not valid or has expired.",
            code="invalid_unsubscribe_token",
            log_message=f"unsubscribe refused: {exc}",
        ) from None
    if not ObjectId.is_valid(claims.user_id):
        raise BadRequest("This unsubscribe link is not valid.", code="invalid_unsubscribe_token")
    return claims


async def preview(ctx: RestContext, token: str) -> UnsubscribePreview:
    claims = _claims(ctx, token)
    used = await ctx.db[UNSUBSCRIBE_TOKENS].find_one({"_id": claims.nonce}, projection={"_id": 1})
    return UnsubscribePreview(kind=claims.kind, pref=PREF_KEYS[claims.kind], used=used is not None)


async def unsubscribe(ctx: RestContext, token: str) -> UnsubscribeResult:
    claims = _claims(ctx, token)
    pref = PREF_KEYS[claims.kind]
    used = ctx.db[UNSUBSCRIBE_TOKENS]
    if await used.find_one({"_id": claims.nonce}, projection={"_id": 1}) is not None:
        raise _already_used(claims)
    # Through the one prefs writer, so a PATCH /api/me racing this click keeps its
    # keys and this one keeps its own. No cap on the number of keys: an unsubscribe
    # must always work, and it only ever sets one of the three email switches.
    await update_prefs(ctx, claims.user_id, {pref: False}, max_keys=None)
    now = datetime.now(UTC)
    try:
        await used.insert_one(
            {
                "_id": claims.nonce,
                "userId": claims.user_id,
                "kind": claims.kind,
                "usedAt": now,
                # Past this the signature has expired too, so the record can go.
                "expiresAt": now + timedelta(seconds=ctx.settings.unsubscribe_token_max_age_s),
            }
        )
    except DuplicateKeyError:
        raise _already_used(claims) from None  # a concurrent use of the same link won
    return UnsubscribeResult(kind=claims.kind, pref=pref)


def _already_used(claims: UnsubscribeClaims) -> Conflict:
    return Conflict(
        "This unsubscribe link has already been used.",
        code="unsubscribe_token_used",
        log_message=f"unsubscribe token reused for {claims.user_id}/{claims.kind}",
    )

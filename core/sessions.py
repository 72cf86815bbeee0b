"""Authenticating an access token for any service: signature, expiry and revocation.

logout-all stores, on the user's Redis shard, the time before which every
access token of that user is revoked; chatd and restd both check it here.
"""

from __future__ import annotations

import time

from core.auth import AccessClaims, TokenError, TokenIssuer
from core.keys import Keys
from core.redis import RedisShards


class Authenticator:
    def __init__(self, issuer: TokenIssuer, redis: RedisShards, keys: Keys) -> None:
        self.issuer = issuer
        self.redis = redis
        self.keys = keys

    async def authenticate(self, token: str | None) -> AccessClaims:
        if not token:
            raise TokenError("missing token")
        claims = self.issuer.verify_access(token)
        revoked = await self.redis.for_user(claims.user_id).get(
            self.keys.revoked_before(claims.user_id)
        )
        if revoked is not None and claims.issued_at_ms <= int(revoked):
            raise TokenError("token revoked")
        return claims

    async def revoke_all(self, user_id: str) -> None:
        """Revoke every access token of user_id issued up to now (logout-all)."""
        key = self.keys.revoked_before(user_id)
        # Kept as long as any access token can live, then it has nothing left to revoke.
        await self.redis.for_user(user_id).set(
            key, int(time.time() * 1000), ex=self.issuer.access_ttl_s + 60
        )

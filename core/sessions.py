"""Authenticating an access token for any service: signature, expiry and revocation.

logout-all stores, on the user's Redis shard, the time before which every
access token of that user is revoked; chatd and restd both check it here.
"""

from __future__ import annotations

import time

from aiodataloader import DataLoader

from core.auth import AccessClaims, TokenError, TokenIssuer
from core.keys import Keys
from core.redis import RedisShards


class Authenticator:
    def __init__(self, issuer: TokenIssuer, redis: RedisShards, keys: Keys) -> None:
        self.issuer = issuer
        self.redis = redis
        self.keys = keys
        self._revocations: DataLoader[str, int | None] | None = None

    async def authenticate(self, token: str | None) -> AccessClaims:
        if not token:
            raise TokenError("missing token")
        claims = self.issuer.verify_access(token)
        if await self.is_revoked(claims.user_id, claims.issued_at_ms):
            raise TokenError("token revoked")
        return claims

    async def is_revoked(self, user_id: str, issued_at_ms: int) -> bool:
        """Whether logout-all has revoked a token of user_id issued at issued_at_ms."""
        if self._revocations is None:
            # Created on first use, inside the running loop the loader schedules on.
            self._revocations = DataLoader(self._load_revocations, cache=False, max_batch_size=500)
        revoked = await self._revocations.load(user_id)
        return revoked is not None and issued_at_ms <= revoked

    async def _load_revocations(self, user_ids: list[str]) -> list[int | None]:
        """One MGET per shard for every check queued in the same loop turn: a
        reconnect storm's thousands of handshakes cost a few round trips."""
        by_shard: dict[int, list[str]] = {}
        for user in user_ids:
            by_shard.setdefault(self.redis.index_for(user), []).append(user)
        found: dict[str, int | None] = {}
        for shard, users in by_shard.items():
            values = await self.redis.clients[shard].mget(
                [self.keys.revoked_before(u) for u in users]
            )
            found.update(
                {u: int(v) if v is not None else None for u, v in zip(users, values, strict=True)}
            )
        return [found[u] for u in user_ids]

    async def revoke_all(self, user_id: str) -> None:
        """Revoke every access token of user_id issued up to now (logout-all)."""
        key = self.keys.revoked_before(user_id)
        # Kept as long as any access token can live, then it has nothing left to revoke.
        await self.redis.for_user(user_id).set(
            key, int(time.time() * 1000), ex=self.issuer.access_ttl_s + 60
        )

"""Authenticating an access token for any service: signature, expiry and revocation.

logout-all stores, on the user's Redis shard, the time up to which every
access token of that user is revoked; chatd and restd both check it here. It
also records the user in that shard's recent-revocations sorted set, which
chatd polls so that it needs no per-user check to close sockets a lost bus
message did not reach.
"""

from __future__ import annotations

import time
from typing import cast

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
        found: dict[str, int | None] = {}
        for shard, users in self.redis.by_shard(user_ids).items():
            values = await self.redis.clients[shard].mget(
                [self.keys.revoked_before(u) for u in users]
            )
            found.update(
                {u: int(v) if v is not None else None for u, v in zip(users, values, strict=True)}
            )
        return [found[u] for u in user_ids]

    async def revoke_all(self, user_id: str) -> None:
        """Revoke every access token of user_id issued up to now (logout-all)."""
        now_ms = int(time.time() * 1000)
        # Kept as long as any access token can live, then it has nothing left to revoke.
        keep_s = self.issuer.access_ttl_s + 60
        recent = self.keys.recent_revocations()
        pipe = self.redis.for_user(user_id).pipeline(transaction=True)
        pipe.set(self.keys.revoked_before(user_id), now_ms, ex=keep_s)
        pipe.zadd(recent, {user_id: now_ms})
        pipe.zremrangebyscore(recent, "-inf", now_ms - keep_s * 1000)
        await pipe.execute()

    async def revocations_since(self, shard: int, since_ms: int) -> dict[str, int]:
        """user -> revoked-up-to epoch ms, for the logout-alls recorded on one shard
        at or after since_ms."""
        found = await self.redis.clients[shard].zrangebyscore(
            self.keys.recent_revocations(), since_ms, "+inf", withscores=True
        )
        pairs = cast("list[tuple[bytes, float]]", found)  # WITHSCORES: (member, score)
        return {user.decode(): int(score) for user, score in pairs}

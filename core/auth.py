"""Auth primitives shared by restd and chatd: access JWTs and password hashing.

Access tokens are HS256 JWTs whose ``sub`` is the user id. ``iatMs`` (issue
time in milliseconds) lets logout-all revoke every token issued before it
without a per-token denylist.

Password hashing is argon2id, whose memory cost (64 MiB) is taken for each
hash or check while it runs. ``PasswordHashing`` runs them in threads, at most
as many at once as the memory budget allows; the rest wait their turn, for a
bounded time, then get ``HashingBusy``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

T = TypeVar("T")

JWT_ALGORITHM = "HS256"
JWT_LEEWAY_S = 5


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """A verified access token: ``issued_at_ms`` in milliseconds, ``expires_at`` in epoch
    seconds (the JWT's ``exp``), ``session_id`` the login (refresh family) it belongs to."""

    user_id: str
    issued_at_ms: int
    expires_at: int
    session_id: str


class TokenError(Exception):
    """The token is missing, malformed, expired or tampered with. Never says which to clients."""


class TokenIssuer:
    def __init__(self, secret: str, access_ttl_s: int) -> None:
        self._secret = secret
        self.access_ttl_s = access_ttl_s

    def issue_access(self, user_id: str, session_id: str | None = None) -> str:
        now_ms = int(time.time() * 1000)
        payload = {
            "sub": user_id,
            "iat": now_ms // 1000,
            "iatMs": now_ms,
            "exp": now_ms // 1000 + self.access_ttl_s,
            "sid": session_id or secrets.token_hex(8),
            "typ": "access",
        }
        return jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM)

    def verify_access(self, token: str) -> AccessClaims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["sub", "exp", "iat"]},
                leeway=JWT_LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        sub = payload.get("sub")
        if not isinstance(sub, str) or payload.get("typ", "access") != "access":
            raise TokenError("wrong token type")
        return AccessClaims(
            user_id=sub,
            issued_at_ms=int(payload.get("iatMs", int(payload["iat"]) * 1000)),
            expires_at=int(payload["exp"]),
            session_id=str(payload.get("sid", "")),
        )


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the hash we store (never the token itself)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HashingBusy(Exception):
    """Every hashing slot stayed taken for the whole wait; the caller answers "retry later"."""


class PasswordHashing:
    """argon2id with the library's RFC 9106 low-memory profile defaults.

    The ``*_async`` methods are what request handlers call: each runs in a
    thread once one of ``slots`` is free, waiting at most ``wait_s`` for it.
    """

    def __init__(self, memory_budget_mib: int | None = None, wait_s: float = 5.0) -> None:
        self._hasher = PasswordHasher()
        # Each running hash holds memory_cost KiB; the budget buys that many at once.
        budget_kib = (memory_budget_mib or 0) * 1024
        self.slots = max(1, budget_kib // self._hasher.memory_cost)
        self.wait_s = wait_s
        self._free = asyncio.Semaphore(self.slots)
        # A real hash to verify against when the email is unknown, so that a
        # login failure takes the same time whether or not the account exists.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    @property
    def memory_cost_kib(self) -> int:
        return int(self._hasher.memory_cost)

    async def hash_async(self, password: str) -> str:
        return await self._in_slot(self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await self._in_slot(self.verify, password_hash, password)

    async def _in_slot(self, fn: Callable[..., T], *args: object) -> T:
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait_s)
        except TimeoutError:
            raise HashingBusy(f"no hashing slot free within {self.wait_s}s") from None
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._free.release()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

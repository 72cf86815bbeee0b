"""Device cookies: OWASP's defence against lockout as a weapon.

A failed login counts against a lock, and if that lock is the account's, anyone
who knows an email can keep its owner out. So a device that signed in
successfully gets a device cookie: a signed, HttpOnly token naming the user and
a random device id, sent back only to the login route. A login that presents a
valid device cookie for the account it signs in to is a *trusted* attempt: it
skips the account's lock and budget and spends only its own (per device id),
which no one else can spend. Attempts without one (a new browser, or an
attacker) share the account's lock and budget, so guessing stays slow.

(OWASP, "Slow Down Online Guessing Attacks with Device Cookies".)

Domain code: no tornado here (STYLE 1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

DEVICE_TOKEN_TYPE = "device"
_ALGORITHM = "HS256"
# Derived from the JWT secret, so a device token can never pass as an access
# token (nor the reverse) even if a type check were forgotten somewhere.
_KEY_LABEL = b"devconnect device cookie v1"


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str


class DeviceTokens:
    def __init__(self, jwt_secret: str, ttl_s: int) -> None:
        self._key = hmac.new(jwt_secret.encode(), _KEY_LABEL, hashlib.sha256).hexdigest()
        self.ttl_s = ttl_s

    def issue(self, user_id: str, device_id: str | None = None) -> str:
        """A device token for the user; ``device_id`` keeps a known device's identity."""
        now = int(time.time())
        payload = {
            "sub": user_id,
            "did": device_id or secrets.token_hex(16),
            "typ": DEVICE_TOKEN_TYPE,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM)

    def read(self, token: str | None) -> Device | None:
        """The device a token names; None for a missing, expired, forged or foreign one."""
        if not token:
            return None
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={"require": ["sub", "did", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        user_id, device_id = payload.get("sub"), payload.get("did")
        if payload.get("typ") != DEVICE_TOKEN_TYPE:
            return None
        if not isinstance(user_id, str) or not isinstance(device_id, str):
            return None
        return Device(user_id, device_id)

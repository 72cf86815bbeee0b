"""Email kinds, the user prefs that switch them, and signed unsubscribe tokens.

Shared by the workers (which put a token in each mail's ``List-Unsubscribe``
link) and restd (which honours it), so it lives in core.

Prefs are a flat map on the user (``users.prefs``): ``emailMessages``,
``emailConnections`` and ``emailPayments``; a missing pref means on, only an
explicit ``false`` turns a kind off.

A token is itsdangerous' URL-safe timed signature (HMAC-SHA1 over the payload
with a key derived from the JWT secret and a purpose salt, so a token minted
for something else never validates here) over ``{"u": user, "k": kind, "n":
nonce}``. The nonce is what "works once" records.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal, get_args

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

EmailKind = Literal["messages", "connections", "payments"]
EMAIL_KINDS: tuple[EmailKind, ...] = get_args(EmailKind)
PREF_KEYS: dict[EmailKind, str] = {
    "messages": "emailMessages",
    "connections": "emailConnections",
    "payments": "emailPayments",
}
UNSUBSCRIBE_SALT = "devconnect/email-unsubscribe/v1"
NONCE_BYTES = 12


def email_enabled(prefs: Any, kind: EmailKind) -> bool:
    if not isinstance(prefs, dict):
        return True
    # `in (False, 0)`: the embedded store reads a boolean written through a dotted
    # $set back as 0; only an explicit off value turns a kind off.
    value = prefs.get(PREF_KEYS[kind])
    return not (value in (False, 0) and not isinstance(value, str))


class TokenInvalid(Exception):
    """A token that is malformed, forged, tampered with or expired (the message says which)."""


@dataclass(frozen=True)
class UnsubscribeClaims:
    user_id: str
    kind: EmailKind
    nonce: str


class UnsubscribeTokens:
    def __init__(self, secret: str, max_age_s: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt=UNSUBSCRIBE_SALT)
        self.max_age_s = max_age_s

    def issue(self, user_id: str, kind: EmailKind) -> str:
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return str(self.serializer.dumps({"u": user_id, "k": kind, "n": nonce}))

    def verify(self, token: str) -> UnsubscribeClaims:
        try:
            data = self.serializer.loads(token, max_age=self.max_age_s)
        except SignatureExpired:
            raise TokenInvalid("this unsubscribe link has expired") from None
        except BadData:
            raise TokenInvalid("this unsubscribe link is not valid") from None
        if not isinstance(data, dict):
            raise TokenInvalid("this unsubscribe link is not valid")
        user, kind, nonce = data.get("u"), data.get("k"), data.get("n")
        if not isinstance(user, str) or kind not in EMAIL_KINDS or not isinstance(nonce, str):
            raise TokenInvalid("this unsubscribe link is not valid")
        return UnsubscribeClaims(user, kind, nonce)

"""What a paid membership grants, read from the user document (pure; no I/O).

The user document carries ``membership``: ``{tier, planId, since, expiresAt,
orders}`` (``orders``: the merchant order ids already granted, which makes a
grant idempotent) and ``membershipVersion``, bumped by every grant so that two
grants for one user never overwrite each other (compare-and-set in
``service.grant``). The tier is active until ``expiresAt``; paying again
extends from the later of now and the current end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from domain.dates import as_utc
from domain.models import MembershipView

PRO = "pro"
# A grant remembers this many recent order ids; older ones were granted long ago.
GRANTED_ORDERS_KEPT = 50


def _membership(user: dict[str, Any]) -> dict[str, Any]:
    value = user.get("membership")
    return value if isinstance(value, dict) else {}


def expires_at(user: dict[str, Any]) -> datetime | None:
    return as_utc(_membership(user).get("expiresAt"))


def tier(user: dict[str, Any], now: datetime) -> str | None:
    """The active paid tier, or None (never paid, or expired)."""
    end = expires_at(user)
    if end is None or end <= now:
        return None
    value = _membership(user).get("tier")
    return str(value) if value else None


def is_pro(user: dict[str, Any], now: datetime) -> bool:
    return tier(user, now) == PRO


def badges(user: dict[str, Any], now: datetime) -> list[str]:
    return [PRO] if is_pro(user, now) else []


def view(user: dict[str, Any], now: datetime) -> MembershipView | None:
    membership = _membership(user)
    if not membership:
        return None
    end = expires_at(user)
    return MembershipView(
        tier=str(membership.get("tier") or PRO),
        planId=str(membership.get("planId") or ""),
        active=end is not None and end > now,
        since=as_utc(membership.get("since")),
        expiresAt=end,
    )


def granted_orders(user: dict[str, Any]) -> list[str]:
    return [str(o) for o in _membership(user).get("orders") or []]


def extended(
    user: dict[str, Any], *, tier_name: str, plan_id: str, order_id: str, days: int, now: datetime
) -> dict[str, Any]:
    """The membership after granting ``days`` more: from max(now, current end)."""
    end = expires_at(user)
    active = end is not None and end > now
    start = end if active and end is not None else now
    current = _membership(user)
    since = as_utc(current.get("since")) if active else None
    orders = [*granted_orders(user), order_id][-GRANTED_ORDERS_KEPT:]
    return {
        "tier": tier_name,
        "planId": plan_id,
        "since": since or now,
        "expiresAt": start + timedelta(days=days),
        "orders": orders,
    }

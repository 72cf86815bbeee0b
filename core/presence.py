"""The presence rule every reader shares (chatd, the workers' sweep).

On a user's shard, hash ``Keys.presence(user)`` maps each node holding a socket
of the user to ``"<expiry epoch s>:<incarnation>"``. Sorted set
``Keys.node_leases()`` on every shard holds each running node incarnation,
``"<node>:<incarnation>"``, scored by the epoch second its lease expires; a node
renews its lease once per heartbeat period (a third of the TTL).

A claim counts while it has not expired, or while the incarnation that made it
holds a live lease. So a node refreshes one lease per shard per period, not one
claim per user, and a node that dies without a word stops counting once its
lease expires. The incarnation keeps a restarted node (same node id) from
reviving the claims its previous process left behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Raw = bytes | str


def _text(value: Raw) -> str:
    return value.decode() if isinstance(value, bytes) else value


def claim_value(expiry_s: int, incarnation: str) -> str:
    return f"{expiry_s}:{incarnation}"


def lease_member(node_id: str, incarnation: str) -> str:
    return f"{node_id}:{incarnation}"


def live_leases(members: Iterable[Raw]) -> set[str]:
    """The members a ``ZRANGEBYSCORE leases now +inf`` returned."""
    return {_text(m) for m in members}


def holders(claims: Mapping[Raw, Raw], leases: set[str], now_s: float) -> set[str]:
    """The nodes whose claim on a user counts (see the module docstring)."""
    found: set[str] = set()
    for raw_node, raw_value in claims.items():
        node = _text(raw_node)
        expiry, _, incarnation = _text(raw_value).partition(":")
        try:
            unexpired = float(expiry) > now_s
        except ValueError:
            unexpired = False
        if unexpired or (incarnation and lease_member(node, incarnation) in leases):
            found.add(node)
    return found

"""Every Redis key and channel name, in one place (STYLE 15; arq).

All keys start with the configured prefix (``dc:`` by default) so that tests
can give each run its own namespace and never touch keys they did not make.
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "dc:") -> None:
        self.prefix = prefix

    # chatd: routing and presence, on the user's shard
    def user_channel(self, user_id: str) -> str:
        """Pub/sub channel carrying live events for one user."""
        return f"{self.prefix}u:{user_id}"

    def presence(self, user_id: str) -> str:
        """Hash: node id -> "<expiry epoch s>:<incarnation>" of its claim (core/presence.py)."""
        return f"{self.prefix}presence:{user_id}"

    def node_leases(self) -> str:
        """Sorted set on every shard: "<node>:<incarnation>" -> epoch second its lease ends."""
        return f"{self.prefix}nodes"

    def last_seen(self, user_id: str) -> str:
        return f"{self.prefix}lastseen:{user_id}"

    def stream_heads(self, user_id: str) -> str:
        """Sorted set: "i"/"o" -> the user's last committed inbound/outbound stream
        positions (core/heads.py)."""
        return f"{self.prefix}heads:{user_id}"

    def offline_due(self) -> str:
        """Sorted set on each shard: user -> epoch second their unread-messages email is due.

        chatd adds a user (ZADD NX: the first unseen message sets the time) when a
        message reaches them with no socket open; the workers' sweep sends one email
        per quiet period and removes them."""
        return f"{self.prefix}offline:due"

    # restd
    def rate(self, bucket: str, subject: str) -> str:
        return f"{self.prefix}rl:{bucket}:{subject}"

    def lockout(self, subject: str) -> str:
        return f"{self.prefix}lockout:{subject}"

    def recommendations(self, user_id: str) -> str:
        return f"{self.prefix}recommendations:user:{user_id}"

    def feed_cursor(self, user_id: str) -> str:
        return f"{self.prefix}feed:user:{user_id}:cursor"

    def revoked_before(self, user_id: str) -> str:
        """Epoch ms: access tokens issued up to this are revoked (logout-all)."""
        return f"{self.prefix}revoked:{user_id}"

    def recent_revocations(self) -> str:
        """Sorted set on each shard: user -> epoch ms of their latest logout-all, kept
        as long as an access token lives; chatd polls it for what is new."""
        return f"{self.prefix}revocations"

    def login_failures(self, subject: str) -> str:
        """Counter of recent failed logins for one subject (see ``lockout``)."""
        return f"{self.prefix}loginfail:{subject}"

    def pair_lock(self, pair: str) -> str:
        """Short-lived lock serialising connection-request writes for one pair."""
        return f"{self.prefix}pairlock:{pair}"


class FeedKeys:
    """The feed's key names (domain/feed), all derived from ``recommendations``
    and ``feed_cursor`` above."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def pointer(self, user_id: str) -> str:
        return self.keys.recommendations(user_id)

    def snapshot(self, user_id: str, snapshot: str) -> str:
        return f"{self.keys.recommendations(user_id)}:{snapshot}"

    def adjacency(self, user_id: str) -> str:
        """The user's accepted connections, comma-separated (domain/feed/featurestore.py)."""
        return f"{self.keys.recommendations(user_id)}:adj"

    def card(self, user_id: str) -> str:
        """The user's profile card as JSON (domain/feed/featurestore.py)."""
        return f"{self.keys.recommendations(user_id)}:card"

    def pool(self, name: str) -> str:
        """A shared candidate pool's ids, e.g. ``skill:rust`` (on the first shard)."""
        return f"{self.keys.prefix}recommendations:pool:{name}"

    def interactions(self, user_id: str) -> str:
        """Hash: other user id -> count of profile views and requests between the two."""
        return f"{self.keys.feed_cursor(user_id)}:interactions"

    def attribution(self, user_id: str) -> str:
        """Hash: user id a request went to from the feed -> variant, until it is answered."""
        return f"{self.keys.feed_cursor(user_id)}:sent"

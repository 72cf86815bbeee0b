"""Weight sets as A/B variants: a user's variant is a pure function of their id.

Hashing (not a stored assignment) keeps a user in the same variant on every
instance and across restarts; changing the salt reshuffles everyone, which is
how a new experiment starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from domain.feed.weights import check_weights


class Variants:
    def __init__(
        self, base: Mapping[str, float], variants: Mapping[str, Mapping[str, float]], salt: str
    ) -> None:
        if not variants:
            raise ValueError("DEVCONNECT_FEED_VARIANTS needs at least one variant")
        base_weights = check_weights(base)
        self.names = sorted(variants)
        self.weights = {
            name: {**base_weights, **check_weights(overrides)}
            for name, overrides in variants.items()
        }
        self.salt = salt

    def assign(self, user_id: str) -> str:
        digest = hashlib.sha256(f"{self.salt}:{user_id}".encode()).digest()
        return self.names[int.from_bytes(digest[:8], "big") % len(self.names)]

    def weights_for(self, variant: str) -> dict[str, float]:
        return self.weights[variant]

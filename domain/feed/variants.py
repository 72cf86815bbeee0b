"""Weight sets and models as A/B variants: a user's variant is a pure function of their id.

Hashing (not a stored assignment) keeps a user in the same variant on every
instance and across restarts; changing the salt reshuffles everyone, which is
how a new experiment starts.

Each variant ranks with its weight set (``feed_variants``) or a learned model,
as ``feed_variant_models`` says: a version number pins that model, ``"weights"``
keeps the weight set always, and ``"promoted"`` (any variant not listed) serves
the promoted model, or the weight set while no model is promoted. So
``{"control": "weights", "learned": "promoted"}`` compares the priors with the
deployment's own model, and ``{"next": 4}`` tries version 4 on a share of users.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

from domain.feed.weights import check_weights

ModelChoice = int | Literal["promoted", "weights"]
PROMOTED: ModelChoice = "promoted"
WEIGHTS: ModelChoice = "weights"


def check_model_choice(variant: str, choice: object) -> ModelChoice:
    if isinstance(choice, int) and not isinstance(choice, bool) and choice >= 1:
        return choice
    if choice == PROMOTED:
        return PROMOTED
    if choice == WEIGHTS:
        return WEIGHTS
    raise ValueError(
        f"DEVCONNECT_FEED_VARIANT_MODELS[{variant!r}] is {choice!r}: "
        'expected a model version (1, 2, ...), "promoted" or "weights"'
    )


class Variants:
    def __init__(
        self,
        base: Mapping[str, float],
        variants: Mapping[str, Mapping[str, float]],
        salt: str,
        models: Mapping[str, object] | None = None,
    ) -> None:
        if not variants:
            raise ValueError("DEVCONNECT_FEED_VARIANTS needs at least one variant")
        base_weights = check_weights(base)
        self.names = sorted(variants)
        self.weights = {
            name: {**base_weights, **check_weights(overrides)}
            for name, overrides in variants.items()
        }
        models = models or {}
        unknown = set(models) - set(variants)
        if unknown:
            raise ValueError(
                f"DEVCONNECT_FEED_VARIANT_MODELS names unknown variants {sorted(unknown)}; "
                f"variants: {self.names}"
            )
        self.models: dict[str, ModelChoice] = {
            name: check_model_choice(name, models.get(name, PROMOTED)) for name in self.names
        }
        self.salt = salt

    def assign(self, user_id: str) -> str:
        digest = hashlib.sha256(f"{self.salt}:{user_id}".encode()).digest()
        return self.names[int.from_bytes(digest[:8], "big") % len(self.names)]

    def weights_for(self, variant: str) -> dict[str, float]:
        return self.weights[variant]

    def model_for(self, variant: str) -> ModelChoice:
        return self.models[variant]

    def pinned_versions(self) -> set[int]:
        return {choice for choice in self.models.values() if isinstance(choice, int)}

"""The default weights, variants and their validation.

``PRIOR_WEIGHTS`` are hand-set logits for every feature, and the product's
default. ``devconnect recs eval`` fits the graph and skill weights on the MUSAE
network and can write them to ``var/feed-weights.json``; they are derived from
GPL-3.0 data, so they are not shipped in the package: an operator adopts them
through ``DEVCONNECT_FEED_WEIGHTS`` (or a variant) after reviewing the licence.
Location, interactions and recency have no signal in the evaluation data, so
they keep their priors until the feed's own recorded outcomes can teach them.
"""

from __future__ import annotations

from collections.abc import Mapping

from domain.feed.features import FEATURES

PRIOR_WEIGHTS: dict[str, float] = {
    "mutual": 1.0,
    "adamic_adar": 1.0,
    "resource_allocation": 0.5,
    "walk": 1.0,
    "three_hop": 0.0,
    "popularity": 0.0,
    "skills": 1.0,
    "skills_rare": 0.5,
    "location": 0.8,
    "interactions": 0.5,
    "recency": 0.4,
}


def default_weights() -> dict[str, float]:
    return dict(PRIOR_WEIGHTS)


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = set(weights) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown feature names {sorted(unknown)}; known: {list(FEATURES)}")
    return {name: float(value) for name, value in weights.items()}

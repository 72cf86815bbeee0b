"""A learned model in service for the bench: the shape the nightly training ships.

The bench's population has no feed events to train on, so the model is fitted
on synthetic candidate lists whose labels follow a hidden mix of the features
(so LightGBM grows every round, as on real data): 200 rounds of 7-leaf trees,
``learning.DEFAULT_PARAMS``. What the bench measures is what serving such a
model costs (scoring and exact contributions per candidate), not its quality,
which ``devconnect recs eval`` measures.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from core.runtime import open_stores
from core.settings import Settings
from domain.feed.features import FEATURES
from domain.feed.learning import Query, fit
from domain.feed.registry import PROMOTED, ModelRegistry

QUERIES = 400
CANDIDATES = 200
POSITIVE_SHARE = 0.05


def synthetic_queries(seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=len(FEATURES))
    queries = []
    for _ in range(QUERIES):
        x = rng.random((CANDIDATES, len(FEATURES)))
        signal = x @ hidden + rng.normal(scale=0.5, size=CANDIDATES)
        cut = np.quantile(signal, 1 - POSITIVE_SHARE)
        queries.append(Query(x, (signal >= cut).astype(np.float64)))
    return queries


def serve_learned_model(settings: Settings, seed: int) -> dict[str, Any]:
    """Fit, and register as the promoted model (restd serves it from its first check)."""
    model = fit(synthetic_queries(seed))

    async def register() -> int:
        stores = open_stores(settings)
        try:
            return await ModelRegistry(stores.db).add(
                model,
                status=PROMOTED,
                reason="feedbench: synthetic labels, the shipped model's shape",
                metrics={"trainQueries": QUERIES},
                window={},
            )
        finally:
            await stores.close()

    version = asyncio.run(register())
    return {"version": version, **model.info, "features": len(FEATURES)}

"""Training the feed's learned ranker on the deployment's own events, and promoting it.

``train_ranker`` reads the training window of ``feedEvents`` (domain/feed/events.py),
builds one LightGBM query per user and side of a time cut, fits
(``learning.fit``), and compares the new model with the ranker in service on
the same held-out queries; the new model is registered either way
(``registry``) and promoted only when its held-out NDCG@20 is higher by at
least ``feed_training_min_gain``.

Queries and labels:

- Each (user, candidate) pair counts once, with the features of its latest
  impression in the window (what the user saw last before acting on it; after a
  request the feed stops showing the pair, so that is usually the one the
  request followed).
- The pairs are ordered by that impression's time; the most recent
  ``feed_training_holdout`` of them are held out for evaluation, the rest train.
  A query is one user's pairs on one side of that cut.
- Label 1 when the user's own request to the candidate was accepted **or is
  still pending**; 0 when it was rejected or withdrawn, or when nothing came of
  the impression. Pending requests count because a request is the decision the
  feed exists to prompt (whether the other person answers is theirs), and
  because leaving them out would drop most positives of the most recent days,
  which are exactly the held-out ones; rejected requests count as 0 like the
  ignored, since the feed hides those pairs afterwards and nothing came of them.
  Requests *received* are not positives for the recipient: their feed did not
  prompt them.

The ranker in service is the promoted model, or, while there is none, the
priors' linear weights (with ``feed_weights`` over them). With too little data
(``feed_training_min_queries`` useful training queries, i.e. with both a
positive and a negative; ``feed_training_min_positives`` positives in them; and
a held-out share of the query minimum) nothing is fitted and the ranker in
service stays: logged, counted (``feed_training_runs_total``) and returned.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from core.mongo import FEED_EVENTS, Doc
from core.runtime import Stores
from domain.feed.features import FEATURES
from domain.feed.learning import FloatArray, Model, Query, fit, mean_ndcg
from domain.feed.metrics import TrainingMetrics
from domain.feed.ranker import score_matrix
from domain.feed.registry import PROMOTED, REFUSED, ModelRegistry, RegistryError
from domain.feed.weights import check_weights, default_weights

log = logging.getLogger(__name__)

Outcome = Literal["promoted", "refused", "too_little_data"]
NDCG_AT = 20
POSITIVE_STATES = frozenset({"request", "accept"})
OUTCOME_KINDS = ("request", "accept", "reject", "withdraw")


@dataclass
class TrainingData:
    train: list[Query]
    held_out: list[Query]
    impressions: int = 0  # impressions read
    pairs: int = 0  # distinct (user, candidate) pairs among them
    window: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _useful(queries: Sequence[Query]) -> list[Query]:
        return [q for q in queries if q.useful]

    def counts(self) -> dict[str, int]:
        train = self._useful(self.train)
        held = self._useful(self.held_out)
        return {
            "impressions": self.impressions,
            "pairs": self.pairs,
            "trainQueries": len(train),
            "trainRows": int(sum(len(q.y) for q in train)),
            "trainPositives": int(sum(q.y.sum() for q in train)),
            "heldOutQueries": len(held),
            "heldOutPositives": int(sum(q.y.sum() for q in held)),
        }


@dataclass(frozen=True)
class TrainingResult:
    outcome: Outcome
    reason: str
    version: int | None  # the model trained in this run (None: too little data)
    serving: int | None  # the model in service after the run (None: the weights)
    metrics: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def labels_of(outcomes: Sequence[Doc]) -> dict[tuple[str, str], float]:
    """Per (sender, recipient): 1.0 when the last word on the request was ``request``
    (pending) or ``accept``, 0.0 when ``reject`` or ``withdraw``. Outcomes in time order."""
    state: dict[tuple[str, str], str] = {}
    for doc in outcomes:
        state[(str(doc["userId"]), str(doc["candidateId"]))] = str(doc["kind"])
    return {pair: 1.0 if kind in POSITIVE_STATES else 0.0 for pair, kind in state.items()}


def build_queries(
    impressions: Sequence[Doc], labels: dict[tuple[str, str], float], holdout: float
) -> TrainingData:
    """Queries from impressions in time order (see the module docstring)."""
    latest: dict[tuple[str, str], Doc] = {}
    for doc in impressions:
        features = doc.get("features")
        if not isinstance(features, list | np.ndarray) or len(features) != len(FEATURES):
            continue  # recorded under another feature set
        pair = (str(doc["userId"]), str(doc["candidateId"]))
        latest.pop(pair, None)  # re-inserted: the dict keeps the order of last impressions
        latest[pair] = doc
    pairs = list(latest.items())
    held_count = min(len(pairs), math.ceil(len(pairs) * holdout))
    cut = len(pairs) - held_count
    sides: list[dict[str, list[tuple[Any, float]]]] = [{}, {}]
    for i, (pair, doc) in enumerate(pairs):
        rows = sides[0 if i < cut else 1].setdefault(pair[0], [])
        rows.append((doc["features"], labels.get(pair, 0.0)))

    def queries(side: dict[str, list[tuple[Any, float]]]) -> list[Query]:
        return [
            Query(
                np.array([r[0] for r in rows], dtype=np.float64),
                np.array([r[1] for r in rows], dtype=np.float64),
            )
            for rows in side.values()
        ]

    def at(i: int) -> datetime | None:
        return pairs[i][1].get("at") if 0 <= i < len(pairs) else None

    window = {"first": at(0), "cut": at(cut), "last": at(len(pairs) - 1)}
    return TrainingData(queries(sides[0]), queries(sides[1]), len(impressions), len(pairs), window)


async def read_events(
    db: AsyncDatabase[Doc], since: datetime, max_impressions: int
) -> tuple[list[Doc], list[Doc]]:
    """The window's impressions (the latest ``max_impressions``, oldest first) and
    its outcomes (oldest first): a training run's only reads of ``feedEvents``."""
    events = db[FEED_EVENTS]
    cursor = (
        events.find(
            {"kind": "impression", "at": {"$gte": since}},
            projection={"_id": 0, "userId": 1, "candidateId": 1, "features": 1, "at": 1},
        )
        .sort([("at", DESCENDING), ("_id", DESCENDING)])
        .limit(max_impressions)
    )
    newest_first: list[Doc] = []
    async for doc in cursor:
        # An array instead of a list of Python floats: about a third of the memory.
        doc["features"] = np.asarray(doc.get("features") or [], dtype=np.float64)
        newest_first.append(doc)
    outcomes = (
        await events.find(
            {"kind": {"$in": list(OUTCOME_KINDS)}, "at": {"$gte": since}},
            projection={"kind": 1, "userId": 1, "candidateId": 1, "at": 1},
        )
        .sort([("at", 1), ("_id", 1)])
        .to_list()
    )
    return newest_first[::-1], outcomes


@dataclass(frozen=True)
class InService:
    """The ranker a new model must beat: the promoted model, or the weights."""

    version: int | None
    score: Callable[[FloatArray], FloatArray]

    @property
    def name(self) -> str:
        return f"model v{self.version}" if self.version is not None else "the priors"


async def in_service(stores: Stores, registry: ModelRegistry) -> InService:
    version = await registry.promoted_version()
    if version is not None:
        try:
            model = await registry.load(version)
            return InService(version, model.score)
        except RegistryError as exc:  # restd cannot serve it either: it ranks with weights
            log.error("the promoted feed model cannot be scored, comparing with weights: %s", exc)
    weights = check_weights({**default_weights(), **stores.settings.feed_weights})
    return InService(None, lambda x: np.asarray(score_matrix(x, weights), dtype=np.float64))


def too_little(data: TrainingData, stores: Stores) -> str | None:
    """Why there is too little to train on, or None when there is enough."""
    s = stores.settings
    counts = data.counts()
    need_held = max(1, math.ceil(s.feed_training_min_queries * s.feed_training_holdout))
    checks = (
        ("trainQueries", "useful queries", s.feed_training_min_queries),
        ("trainPositives", "positives", s.feed_training_min_positives),
        ("heldOutQueries", "held-out queries", need_held),
    )
    short = [f"{counts[k]} {what} (need {need})" for k, what, need in checks if counts[k] < need]
    return ", ".join(short) if short else None


async def train_ranker(
    stores: Stores, metrics: TrainingMetrics | None = None, now: datetime | None = None
) -> TrainingResult:
    """One training run: read, fit, evaluate, register, promote when better."""
    s = stores.settings
    started = time.monotonic()
    now = now or datetime.now(UTC)
    since = now - timedelta(days=s.feed_training_window_days)
    registry = ModelRegistry(stores.db)
    impressions, outcomes = await read_events(stores.db, since, s.feed_training_max_impressions)
    data = build_queries(impressions, labels_of(outcomes), s.feed_training_holdout)
    current = await in_service(stores, registry)
    counts = data.counts()
    short = too_little(data, stores)
    if short is not None:
        reason = f"too little data to train: {short}; keeping {current.name}"
        log.warning("feed training: %s (%.1fs)", reason, time.monotonic() - started)
        if metrics:
            metrics.runs.labels("too_little_data").inc()
        return TrainingResult("too_little_data", reason, None, current.version, counts)

    model: Model = await asyncio.to_thread(fit, data.train)
    new_ndcg = mean_ndcg(model.score, data.held_out, NDCG_AT)
    old_ndcg = mean_ndcg(current.score, data.held_out, NDCG_AT)
    better = new_ndcg > old_ndcg + s.feed_training_min_gain
    verdict = "beats" if better else "does not beat"
    reason = (
        f"held-out NDCG@{NDCG_AT} {new_ndcg:.4f} {verdict} {current.name}'s {old_ndcg:.4f} "
        f"by more than {s.feed_training_min_gain} ({counts['heldOutQueries']} queries)"
    )
    recorded = {
        **counts,
        "heldOutNdcg": {"new": new_ndcg, "inService": old_ndcg},
        "inServiceVersion": current.version,
        "minGain": s.feed_training_min_gain,
        "rounds": model.info.get("rounds"),
    }
    window = {"from": since, **data.window}
    status = PROMOTED if better else REFUSED
    version = await registry.add(
        model, status=status, reason=reason, metrics=recorded, window=window
    )
    pinned = {v for v in s.feed_variant_models.values() if isinstance(v, int)}
    await registry.prune(s.feed_models_keep, pinned)
    outcome: Outcome = "promoted" if better else "refused"
    if metrics:
        metrics.runs.labels(outcome).inc()
    log.info(
        "feed training: v%d %s: %s; %d queries, %d rows, %d positives in %.1fs",
        version,
        outcome,
        reason,
        counts["trainQueries"],
        counts["trainRows"],
        counts["trainPositives"],
        time.monotonic() - started,
    )
    serving = version if better else current.version
    return TrainingResult(outcome, reason, version, serving, recorded)

"""Scoring, explanation and candidate selection: the code the feed and the evaluation share.

With weights, a score is a weighted sum of the features (``features.FEATURES``),
so each feature's contribution is ``weight x value``. With a learned model
(``learning.Model``), the contributions are LightGBM's ``pred_contrib``: one
per feature plus the model's ``bias`` (its expected score), shown as an entry
of its own. Either way they are rounded first and the score is their sum, so
the explanation sums to the score exactly. Weights are logits of a logistic
model (``learn``), plus hand-set priors for the features the evaluation data
cannot teach (location, interactions, recency).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from domain.feed.features import FEATURES, Person, feature_matrix
from domain.feed.graph import LocalGraph, Neighbourhood
from domain.feed.learning import Model

CONTRIBUTION_DIGITS = 6
# A learned model's expected score, the contribution no feature accounts for.
BIAS = "bias"
MAX_SHARED_SKILLS_SHOWN = 3
RECENT_DAYS = 3.0


@dataclass(frozen=True)
class Ranked:
    id: str
    score: float
    contributions: dict[str, float]
    reasons: list[str]
    values: dict[str, float] | None = None  # the features as ranked, each in [0, 1]


def weight_vector(weights: Mapping[str, float]) -> np.ndarray:
    unknown = set(weights) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown feature weights: {sorted(unknown)}")
    return np.array([float(weights.get(name, 0.0)) for name in FEATURES])


def reachable(graph: LocalGraph, nb: Neighbourhood) -> list[str]:
    """Everyone the known edges reach, minus the user and their connections."""
    skip = {nb.user, *nb.friends}
    return [node for node in graph.index if node not in skip]


def expansion_targets(nb: Neighbourhood, excluded: Collection[str], count: int) -> list[str]:
    """The hop-2 people worth reading further: most walk mass after two steps.

    Two steps of the walk land on a hop-2 person in proportion to their
    resource-allocation score; reading their connections lets the third step
    (and their true degree) into the walk.
    """
    if count <= 0:
        return []
    graph = LocalGraph(nb)
    hop2 = [c for c in reachable(graph, nb) if c not in excluded]
    if not hop2:
        return []
    scores = graph.scores(hop2).resource_allocation
    order = np.argsort(-scores, kind="stable")[:count]
    return [hop2[i] for i in order if scores[i] > 0]


def graph_pool(
    graph: LocalGraph, nb: Neighbourhood, excluded: Collection[str], cap: int
) -> list[str]:
    """The graph candidates: the ``cap`` reachable people the walk reaches most."""
    reach = [c for c in reachable(graph, nb) if c not in excluded]
    if not reach:
        return []
    scores = graph.scores(reach)
    order = np.argsort(-(scores.walk + 1e-9 * scores.adamic_adar), kind="stable")[:cap]
    return [reach[i] for i in order]


def score_matrix(x: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Scores for a feature matrix: the ranking order ``rank`` would give, without explain."""
    return x @ weight_vector(weights)  # type: ignore[no-any-return]


def reasons_for(user: Person, other: Person, mutual: int, values: Mapping[str, float]) -> list[str]:
    reasons: list[str] = []
    if mutual:
        reasons.append(f"{mutual} mutual connection{'s' if mutual != 1 else ''}")
    elif values.get("walk", 0.0) > 0 or values.get("three_hop", 0.0) > 0:
        reasons.append("in your extended network")
    shared = sorted(user.skills & other.skills)
    if shared:
        shown = ", ".join(shared[:MAX_SHARED_SKILLS_SHOWN])
        more = len(shared) - MAX_SHARED_SKILLS_SHOWN
        reasons.append(f"both know {shown}" + (f" and {more} more" if more > 0 else ""))
    if user.city and user.city == other.city:
        reasons.append(f"both in {other.meta.get('city', other.city)}")
    elif user.country and user.country == other.country:
        reasons.append(f"both in {other.meta.get('country', other.country)}")
    elif values.get("location", 0.0) > 0:
        reasons.append("nearby")
    if values.get("interactions", 0.0) > 0:
        reasons.append("you have crossed paths before")
    if other.active_days_ago is not None and other.active_days_ago <= RECENT_DAYS:
        reasons.append("active recently")
    if other.meta.get("newcomer") and not mutual:
        reasons.append("new on DevConnect")
    return reasons


def _rounded_totals(contrib: np.ndarray) -> np.ndarray:
    return np.array([math.fsum(row) for row in contrib])


def _explained(
    x: np.ndarray, ids: np.ndarray, weights: Mapping[str, float], model: Model | None, top: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(the ``top`` rows in rank order, their rounded contributions, the names of the columns).

    A model scores the values rounded as ``explain.values`` shows them, so those
    values reproduce the score; contributions (TreeSHAP, the costly part) are
    computed only for the rows kept.
    """
    if model is None:
        contrib = np.round(x * weight_vector(weights), CONTRIBUTION_DIGITS)
        total = _rounded_totals(contrib)
        order = np.lexsort((ids, -total))[:top]
        return order, contrib[order], FEATURES
    kept = np.lexsort((ids, -model.score(x)))[:top]
    contrib = np.round(model.contributions(x[kept]), CONTRIBUTION_DIGITS)
    # Order by the shown score (the rounded sum) so that scores never rise down the list.
    again = np.lexsort((ids[kept], -_rounded_totals(contrib)))
    return kept[again], contrib[again], (*FEATURES, BIAS)


def rank(
    user: Person,
    graph: LocalGraph,
    candidates: Sequence[Person],
    weights: Mapping[str, float],
    interactions: Mapping[str, float] | None = None,
    limit: int | None = None,
    model: Model | None = None,
) -> list[Ranked]:
    """Candidates ordered by score (ties by id), each with its explanation; scored by
    ``model`` when one is given, else by ``weights``."""
    if not candidates:
        return []
    scores = graph.scores([c.id for c in candidates])
    x = feature_matrix(user, candidates, scores, interactions)
    if model is not None:
        x = np.round(x, CONTRIBUTION_DIGITS)
    ids = np.array([c.id for c in candidates])
    top = limit if limit is not None else len(candidates)
    order, contrib, names = _explained(x, ids, weights, model, top)
    ranked: list[Ranked] = []
    for row, i in enumerate(order):
        other = candidates[i]
        contributions = {name: float(contrib[row, j]) for j, name in enumerate(names)}
        values = {name: float(x[i, j]) for j, name in enumerate(FEATURES)}
        reasons = reasons_for(user, other, int(scores.common[i]), values)
        rounded = {name: round(v, CONTRIBUTION_DIGITS) for name, v in values.items()}
        total = math.fsum(contrib[row])
        ranked.append(Ranked(other.id, total, contributions, reasons, rounded))
    return ranked

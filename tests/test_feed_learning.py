"""The feed's learning-to-rank core (domain/feed/learning.py) on synthetic queries:
it learns an ordering a feature carries, explains every score exactly, and
survives a round trip through its text form (what a model registry stores)."""

from __future__ import annotations

import numpy as np
import pytest

from domain.feed.features import FEATURES
from domain.feed.learning import Model, Query, fit, mean_ndcg, ndcg_at

WALK = FEATURES.index("walk")


def _queries(count: int, seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(count):
        x = rng.random((80, len(FEATURES)))
        # Connections come of candidates the walk scores high, with noise.
        y = (x[:, WALK] + 0.3 * rng.random(80) > 1.0).astype(np.float64)
        queries.append(Query(x, y))
    return queries


def test_it_learns_the_ordering_a_feature_carries() -> None:
    model = fit(_queries(150, 1), rounds=60)
    held_out = _queries(50, 2)
    shuffled = [Query(np.random.default_rng(3).random(q.x.shape), q.y) for q in held_out]
    assert mean_ndcg(model.score, held_out) > 0.8
    assert mean_ndcg(model.score, held_out) > mean_ndcg(model.score, shuffled) + 0.3


def test_contributions_sum_to_the_score() -> None:
    model = fit(_queries(60, 4), rounds=30)
    x = _queries(1, 5)[0].x
    contributions = model.contributions(x)
    assert contributions.shape == (len(x), len(FEATURES) + 1)  # features, then the bias
    np.testing.assert_allclose(contributions.sum(axis=1), model.score(x), rtol=1e-9, atol=1e-9)


def test_a_model_round_trips_through_text() -> None:
    model = fit(_queries(60, 6), rounds=20)
    again = Model.load(model.dump())
    x = _queries(1, 7)[0].x
    np.testing.assert_allclose(again.score(x), model.score(x))


def test_nothing_to_learn_from_is_an_error() -> None:
    rng = np.random.default_rng(8)
    only_negatives = [Query(rng.random((10, len(FEATURES))), np.zeros(10)) for _ in range(5)]
    with pytest.raises(ValueError, match="no query"):
        fit(only_negatives)


def test_ndcg_of_a_perfect_and_a_reversed_order() -> None:
    labels = np.array([1.0, 0.0, 0.0, 1.0])
    assert ndcg_at(np.array([4.0, 1.0, 0.0, 3.0]), labels) == pytest.approx(1.0)
    assert ndcg_at(np.array([0.0, 3.0, 4.0, 1.0]), labels) < 0.7

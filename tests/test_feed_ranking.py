"""The pure ranking code shared by the feed and the evaluation, on graphs checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domain.feed.cache import make_cursor, parse_cursor
from domain.feed.features import FEATURES, Person, location_score, split_location
from domain.feed.graph import LocalGraph, Neighbourhood
from domain.feed.ranker import expansion_targets, graph_pool, rank
from domain.feed.skills import normalize_skills, query_forms
from domain.feed.variants import Variants
from domain.feed.weights import PRIOR_WEIGHTS, default_weights
from tooling.feed_learn import fit_logistic

# u - a - x, u - b - x, u - b - y, a has one more friend (z): x has two mutuals, y one.
NB = Neighbourhood(
    "u",
    ["a", "b"],
    {"a": ["u", "x", "z"], "b": ["u", "x", "y"]},
)


def test_graph_scores_match_hand_counts() -> None:
    scores = LocalGraph(NB).scores(["x", "y", "z", "nobody"])
    assert scores.common.tolist() == [2, 1, 1, 0]
    expected_aa = 2 / math.log(3)  # both mutuals have degree 3
    assert scores.adamic_adar[0] == pytest.approx(expected_aa)
    assert scores.resource_allocation[0] == pytest.approx(2 / 3)
    assert scores.walk[0] > scores.walk[1] > 0
    assert scores.walk[3] == 0


def test_pool_and_expansion_skip_excluded_people() -> None:
    graph = LocalGraph(NB)
    assert set(graph_pool(graph, NB, {"u", "a", "b", "x"}, 10)) == {"y", "z"}
    assert graph_pool(graph, NB, {"u", "a", "b"}, 1) == ["x"]
    assert expansion_targets(NB, {"u", "a", "b"}, 1) == ["x"]


def test_explain_sums_to_the_score_and_names_reasons() -> None:
    me = Person("u", skills=normalize_skills(["Rust", "JS"]), city="berlin", country="germany")
    x = Person(
        "x", skills=normalize_skills(["rust", "javascript"]), city="berlin", meta={"city": "Berlin"}
    )
    y = Person("y", active_days_ago=1.0)
    ranked = rank(me, LocalGraph(NB), [y, x], default_weights(), {"y": 2.0})
    assert [r.id for r in ranked] == ["x", "y"]
    for r in ranked:
        assert set(r.contributions) == set(FEATURES)
        assert math.fsum(r.contributions.values()) == r.score
    assert ranked[0].reasons[:3] == [
        "2 mutual connections",
        "both know javascript, rust",
        "both in Berlin",
    ]
    assert "active recently" in ranked[1].reasons
    assert "you have crossed paths before" in ranked[1].reasons


def test_features_stay_in_unit_range_and_location_grades() -> None:
    assert split_location(" Berlin ,  Germany ") == ("berlin", "germany")
    home = Person("a", city="berlin", country="germany", coords=(52.52, 13.40))
    assert location_score(home, Person("b", city="berlin")) == 1.0
    assert location_score(home, Person("c", city="munich", country="germany")) == 0.5
    potsdam = Person("d", coords=(52.39, 13.06))
    assert 0.8 < location_score(home, potsdam) < 1.0
    assert location_score(home, Person("e")) == 0.0


def test_skill_synonyms_fold_and_expand_for_lookups() -> None:
    assert normalize_skills([" JS ", "Golang", "Go", ""]) == {"javascript", "go"}
    assert {"js", "javascript", "ecmascript"} <= set(query_forms(["javascript"]))


def test_variants_are_a_stable_function_of_the_user_id() -> None:
    variants = Variants(PRIOR_WEIGHTS, {"a": {}, "b": {"skills": 3.0}}, "salt")
    again = Variants(PRIOR_WEIGHTS, {"b": {"skills": 3.0}, "a": {}}, "salt")
    users = [f"{i:024x}" for i in range(200)]
    assert [variants.assign(u) for u in users] == [again.assign(u) for u in users]
    counts = {name: sum(variants.assign(u) == name for u in users) for name in ("a", "b")}
    assert min(counts.values()) > 60
    assert variants.weights_for("b")["skills"] == 3.0
    with pytest.raises(ValueError, match="unknown feature"):
        Variants(PRIOR_WEIGHTS, {"a": {"charisma": 1.0}}, "salt")


def test_cursor_round_trip_and_refusals() -> None:
    assert parse_cursor(make_cursor("0123456789abcdef", 40)) == ("0123456789abcdef", 40)
    for bad in ("", "0123456789abcdef", "0123456789abcdef.-1", "XYZ.1", "0123456789abcdef.1.2"):
        assert parse_cursor(bad) is None


def test_logistic_fit_recovers_the_direction_of_the_signal() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((4000, 2))
    logits = 4.0 * x[:, 0] - 2.0 * x[:, 1] - 1.0
    y = (rng.random(4000) < 1 / (1 + np.exp(-logits))).astype(float)
    w, b = fit_logistic(x, y, np.ones(4000), l2=0.1)
    assert w[0] == pytest.approx(4.0, abs=0.6)
    assert w[1] == pytest.approx(-2.0, abs=0.6)
    assert b == pytest.approx(-1.0, abs=0.5)

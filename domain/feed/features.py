"""The ranker's features: each one a number in [0, 1] per (user, candidate).

``FEATURES`` is the fixed order of the columns; weights, explanations and the
evaluation all use these names. Graph numbers come from ``graph``; the rest
from the two profiles (``Person``) and recorded interactions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from domain.feed.graph import FloatArray, GraphScores

FEATURES: tuple[str, ...] = (
    "mutual",  # mutual connections, saturating count
    "adamic_adar",  # mutuals weighted by 1 / log(their degree), relative to the best candidate
    "resource_allocation",  # mutuals weighted by 1 / degree, relative
    "walk",  # random walk with restart from the user, relative
    "three_hop",  # length-3 paths, log-scaled, relative
    "popularity",  # the candidate's degree as far as the neighbourhood knows it, log-scaled
    "skills",  # Jaccard over normalised skills
    "skills_rare",  # skills overlap weighted by rarity among this user's candidates
    "location",  # same city 1, same country 0.5, or closeness by coordinates
    "interactions",  # past profile views and requests between the two
    "recency",  # how recently the candidate was active
    # The graph numbers again on a fixed scale rather than relative to this
    # user's best candidate: a learned ranker compares them across users.
    "jaccard",  # mutuals / everyone either of the two is connected to
    "adamic_adar_abs",  # Adamic-Adar, saturating
    "resource_allocation_abs",  # resource allocation, saturating
    "walk_abs",  # walk mass times the user's degree, saturating
    "three_hop_abs",  # length-3 paths, log-scaled against a fixed cap
    "user_degree",  # the user's own degree, log-scaled: context for the other columns
)

# Half-saturation points: the count at which a feature reaches 0.5.
MUTUAL_HALF = 3.0
INTERACTIONS_HALF = 2.0
POPULARITY_CAP = 1000.0
RECENCY_HALF_LIFE_DAYS = 14.0
NEARBY_KM = 300.0
EARTH_RADIUS_KM = 6371.0
ADAMIC_ADAR_HALF = 1.0
RESOURCE_ALLOCATION_HALF = 0.1
WALK_HALF = 0.1
THREE_HOP_CAP = 10000.0


@dataclass(frozen=True)
class Person:
    """What the ranker reads of a profile."""

    id: str
    skills: frozenset[str] = frozenset()
    city: str = ""
    country: str = ""
    coords: tuple[float, float] | None = None  # (lat, lon) in degrees
    active_days_ago: float | None = None  # days since last seen (or since sign-up)
    meta: Mapping[str, str] = field(default_factory=dict)


def split_location(text: str) -> tuple[str, str]:
    """("Berlin, Germany") -> ("berlin", "germany"); a single part is taken as the city."""
    parts = [" ".join(p.split()).casefold() for p in text.split(",") if p.strip()]
    if not parts:
        return "", ""
    return parts[0], parts[-1] if len(parts) > 1 else ""


def _relative(values: FloatArray) -> FloatArray:
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def _haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def location_score(user: Person, other: Person) -> float:
    score = 0.0
    if user.coords and other.coords:
        score = max(0.0, 1.0 - _haversine_km(user.coords, other.coords) / NEARBY_KM)
    if user.city and user.city == other.city:
        score = 1.0
    elif user.country and user.country == other.country:
        score = max(score, 0.5)
    return score


def location_scores(user: Person, candidates: Sequence[Person]) -> FloatArray:
    """``location_score`` for every candidate at once (the haversine in NumPy)."""
    n = len(candidates)
    score = np.zeros(n)
    if user.coords:
        at = [i for i, c in enumerate(candidates) if c.coords is not None]
        if at:
            theirs = np.radians(np.array([candidates[i].coords for i in at], dtype=np.float64))
            lat1, lon1 = np.radians(user.coords[0]), np.radians(user.coords[1])
            lat2, lon2 = theirs[:, 0], theirs[:, 1]
            h = (
                np.sin((lat2 - lat1) / 2) ** 2
                + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
            )
            km = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
            score[at] = np.maximum(0.0, 1.0 - km / NEARBY_KM)
    if user.country:
        same = np.fromiter((c.country == user.country for c in candidates), bool, n)
        score[same] = np.maximum(score[same], 0.5)
    if user.city:
        score[np.fromiter((c.city == user.city for c in candidates), bool, n)] = 1.0
    return score


def _graph_columns(x: FloatArray, col: Mapping[str, int], graph: GraphScores) -> None:
    x[:, col["mutual"]] = graph.common / (graph.common + MUTUAL_HALF)
    x[:, col["adamic_adar"]] = _relative(graph.adamic_adar)
    x[:, col["resource_allocation"]] = _relative(graph.resource_allocation)
    x[:, col["walk"]] = _relative(graph.walk)
    x[:, col["three_hop"]] = _relative(np.log1p(graph.three_hop))
    x[:, col["popularity"]] = np.minimum(1.0, np.log1p(graph.degree) / math.log1p(POPULARITY_CAP))
    either = np.maximum(graph.user_degree + graph.degree - graph.common, 1.0)
    x[:, col["jaccard"]] = graph.common / either
    x[:, col["adamic_adar_abs"]] = graph.adamic_adar / (graph.adamic_adar + ADAMIC_ADAR_HALF)
    ra = graph.resource_allocation
    x[:, col["resource_allocation_abs"]] = ra / (ra + RESOURCE_ALLOCATION_HALF)
    walk = graph.walk * graph.user_degree
    x[:, col["walk_abs"]] = walk / (walk + WALK_HALF)
    x[:, col["three_hop_abs"]] = np.log1p(graph.three_hop) / math.log1p(THREE_HOP_CAP)
    x[:, col["user_degree"]] = math.log1p(graph.user_degree) / math.log1p(POPULARITY_CAP)


def feature_matrix(
    user: Person,
    candidates: Sequence[Person],
    graph: GraphScores,
    interactions: Mapping[str, float] | None = None,
) -> FloatArray:
    """Rows = candidates, columns = ``FEATURES``, every value in [0, 1]."""
    n = len(candidates)
    x = np.zeros((n, len(FEATURES)))
    col = {name: i for i, name in enumerate(FEATURES)}
    _graph_columns(x, col, graph)

    # Rarity among this user's own candidates: a skill everyone around holds says little.
    held = Counter(s for c in candidates for s in c.skills & user.skills)
    idf = {s: math.log((1 + n) / (1 + k)) + 1.0 for s, k in held.items()}
    idf_total = sum(math.log((1 + n) / (1 + held.get(s, 0))) + 1.0 for s in user.skills)
    if held:
        for i, other in enumerate(candidates):
            shared = user.skills & other.skills
            if shared:
                x[i, col["skills"]] = len(shared) / len(user.skills | other.skills)
                x[i, col["skills_rare"]] = sum(idf[s] for s in shared) / idf_total
    x[:, col["location"]] = location_scores(user, candidates)
    if interactions:
        counts = np.fromiter((interactions.get(c.id, 0.0) for c in candidates), np.float64, n)
        x[:, col["interactions"]] = counts / (counts + INTERACTIONS_HALF)
    days = np.fromiter(
        (np.nan if c.active_days_ago is None else c.active_days_ago for c in candidates),
        np.float64,
        n,
    )
    seen = ~np.isnan(days)
    x[seen, col["recency"]] = 0.5 ** (np.maximum(0.0, days[seen]) / RECENCY_HALF_LIFE_DAYS)
    return np.clip(x, 0.0, 1.0)

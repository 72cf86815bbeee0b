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
)

# Half-saturation points: the count at which a feature reaches 0.5.
MUTUAL_HALF = 3.0
INTERACTIONS_HALF = 2.0
POPULARITY_CAP = 1000.0
RECENCY_HALF_LIFE_DAYS = 14.0
NEARBY_KM = 300.0
EARTH_RADIUS_KM = 6371.0


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
    x[:, col["mutual"]] = graph.common / (graph.common + MUTUAL_HALF)
    x[:, col["adamic_adar"]] = _relative(graph.adamic_adar)
    x[:, col["resource_allocation"]] = _relative(graph.resource_allocation)
    x[:, col["walk"]] = _relative(graph.walk)
    x[:, col["three_hop"]] = _relative(np.log1p(graph.three_hop))
    x[:, col["popularity"]] = np.minimum(1.0, np.log1p(graph.degree) / math.log1p(POPULARITY_CAP))

    # Rarity among this user's own candidates: a skill everyone around holds says little.
    held = Counter(s for c in candidates for s in c.skills & user.skills)
    idf = {s: math.log((1 + n) / (1 + k)) + 1.0 for s, k in held.items()}
    idf_total = sum(math.log((1 + n) / (1 + held.get(s, 0))) + 1.0 for s in user.skills)
    interactions = interactions or {}
    for i, other in enumerate(candidates):
        shared = user.skills & other.skills
        if shared:
            union = len(user.skills | other.skills)
            x[i, col["skills"]] = len(shared) / union
            x[i, col["skills_rare"]] = sum(idf[s] for s in shared) / idf_total
        x[i, col["location"]] = location_score(user, other)
        count = interactions.get(other.id, 0.0)
        x[i, col["interactions"]] = count / (count + INTERACTIONS_HALF)
        if other.active_days_ago is not None:
            x[i, col["recency"]] = 0.5 ** (max(0.0, other.active_days_ago) / RECENCY_HALF_LIFE_DAYS)
    return np.clip(x, 0.0, 1.0)

"""A synthetic developer population: skewed skills and cities, a power-law graph.

Skills and cities follow Zipf-like popularity (a few very common, a long
tail), some skills in alias spellings ("js", "golang") as people type them;
connections follow a Chung-Lu model with Pareto weights (a power-law degree
distribution with a few hubs), half of them drawn within the same city.
Everything comes from one seed, so a run can be repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from bson import ObjectId

from core.ids import pair_key

SKILLS = [
    "javascript",
    "typescript",
    "python",
    "java",
    "go",
    "rust",
    "c",
    "cpp",
    "csharp",
    "ruby",
    "php",
    "kotlin",
    "swift",
    "scala",
    "elixir",
    "haskell",
    "clojure",
    "r",
    "julia",
    "dart",
    "lua",
    "perl",
    "sql",
    "postgresql",
    "mysql",
    "mongodb",
    "redis",
    "kafka",
    "rabbitmq",
    "elasticsearch",
    "react",
    "vue",
    "angular",
    "svelte",
    "node.js",
    "django",
    "flask",
    "fastapi",
    "rails",
    "spring",
    "laravel",
    "express",
    "graphql",
    "grpc",
    "rest",
    "docker",
    "kubernetes",
    "terraform",
    "ansible",
    "aws",
    "gcp",
    "azure",
    "linux",
    "bash",
    "git",
    "ci/cd",
    "jenkins",
    "github",
    "actions",
    "machine",
    "learning",
    "deep",
    "learning",
    "pytorch",
    "tensorflow",
    "pandas",
    "numpy",
    "spark",
    "hadoop",
    "airflow",
    "dbt",
    "tableau",
    "security",
    "cryptography",
    "networking",
    "embedded",
    "fpga",
    "verilog",
    "android",
    "ios",
    "flutter",
    "react",
    "native",
    "unity",
    "unreal",
    "opengl",
    "webgl",
    "blockchain",
    "solidity",
    "web3",
    "devops",
    "sre",
    "observability",
    "prometheus",
    "grafana",
    "nginx",
    "microservices",
    "distributed",
    "systems",
    "compilers",
    "databases",
    "data",
    "engineering",
    "nlp",
    "computer",
    "vision",
    "robotics",
]
ALIASES = {"javascript": "js", "go": "golang", "typescript": "ts", "kubernetes": "k8s"}
COUNTRIES = (
    "India",
    "United States",
    "Germany",
    "United Kingdom",
    "Brazil",
    "Canada",
    "France",
    "Netherlands",
    "Poland",
    "Spain",
    "Italy",
    "Sweden",
    "Ukraine",
    "China",
    "Japan",
    "Australia",
    "Nigeria",
    "Kenya",
    "Egypt",
    "Argentina",
    "Mexico",
    "Indonesia",
    "Vietnam",
    "Turkey",
    "Israel",
    "Switzerland",
    "Portugal",
    "Romania",
    "Finland",
    "South Africa",
)
CITIES_PER_COUNTRY = 8
MEAN_DEGREE = 8.0
PARETO_SHAPE = 1.2  # degree tail exponent ~2.2
SAME_CITY_SHARE = 0.5
NO_LOCATION_SHARE = 0.1


@dataclass
class Population:
    users: list[dict[str, Any]]
    edges: np.ndarray  # (m, 2) indices into users
    degree: np.ndarray


def _zipf_choice(rng: np.random.Generator, n_items: int, size: int, s: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n_items + 1) ** s
    return rng.choice(n_items, size=size, p=p / p.sum())


def generate(n_users: int, seed: int = 7) -> Population:
    rng = np.random.default_rng(seed)
    cities = [
        (f"City{ci}-{k}", country)
        for ci, country in enumerate(COUNTRIES)
        for k in range(CITIES_PER_COUNTRY)
    ]
    city_coords = [(float(rng.uniform(-50, 60)), float(rng.uniform(-120, 140))) for _ in cities]
    city_of = _zipf_choice(rng, len(cities), n_users, s=0.9)
    no_location = rng.random(n_users) < NO_LOCATION_SHARE
    now = datetime.now(UTC)
    users: list[dict[str, Any]] = []
    for i in range(n_users):
        count = int(rng.integers(3, 13))
        picked = {SKILLS[j] for j in _zipf_choice(rng, len(SKILLS), count)}
        skills = [ALIASES[s] if s in ALIASES and rng.random() < 0.3 else s for s in sorted(picked)]
        created = now - timedelta(days=float(rng.exponential(400)))
        seen = now - timedelta(days=float(rng.exponential(20)))
        doc: dict[str, Any] = {
            "_id": ObjectId(),
            "name": f"Dev {i}",
            "email": f"dev{i}@bench.example",
            "passwordHash": "!bench",
            "skills": skills,
            "headline": f"{skills[0]} developer",
            "bio": "",
            "prefs": {},
            "createdAt": created,
            "lastSeen": seen,
            "location": "",
        }
        if not no_location[i]:
            city, country = cities[city_of[i]]
            lat, lon = city_coords[city_of[i]]
            doc["location"] = f"{city}, {country}"
            doc["geo"] = {
                "lat": lat + float(rng.normal(0, 0.2)),
                "lon": lon + float(rng.normal(0, 0.2)),
            }
        users.append(doc)

    # Chung-Lu: endpoints drawn in proportion to Pareto weights.
    weights = rng.pareto(PARETO_SHAPE, n_users) + 1.0
    m = int(n_users * MEAN_DEGREE / 2)
    p = weights / weights.sum()
    a = rng.choice(n_users, size=m, p=p)
    b = rng.choice(n_users, size=m, p=p)
    # Half the edges re-drawn within a's city: people know people nearby.
    by_city: dict[int, np.ndarray] = {}
    located = np.flatnonzero(~no_location)
    for c in np.unique(city_of[located]):
        by_city[int(c)] = located[city_of[located] == c]
    local = rng.random(m) < SAME_CITY_SHARE
    for k in np.flatnonzero(local):
        if no_location[a[k]]:
            continue
        members = by_city[int(city_of[a[k]])]
        b[k] = members[int(rng.integers(len(members)))]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    edges = np.unique(np.stack([lo[keep], hi[keep]], axis=1), axis=0)
    degree = np.bincount(edges.ravel(), minlength=n_users)
    return Population(users, edges, degree)


def connection_docs(pop: Population) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for x, y in pop.edges:
        a, b = str(pop.users[x]["_id"]), str(pop.users[y]["_id"])
        yield {
            "fromUserId": a,
            "toUserId": b,
            "status": "accepted",
            "message": "",
            "pairKey": pair_key(a, b),
            "createdAt": now,
            "updatedAt": now,
        }

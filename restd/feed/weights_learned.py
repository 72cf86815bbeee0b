"""Weights learned by `devconnect recs eval --write-weights` (generated; do not edit).

Split seed 20260; NDCG@20 0.1467 vs Adamic-Adar 0.1149 on the held-out users.
"""

LEARNED_WEIGHTS: dict[str, float] = {
    "mutual": 2.3631,
    "adamic_adar": -2.1982,
    "resource_allocation": 1.069,
    "walk": 3.6789,
    "three_hop": 4.1416,
    "popularity": -0.0975,
    "skills": 1.0718,
    "skills_rare": 1.4584,
    "location": 0.8,
    "interactions": 0.5,
    "recency": 0.4,
}

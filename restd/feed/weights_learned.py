"""Placeholder until `devconnect recs eval --write-weights` runs."""

LEARNED_WEIGHTS: dict[str, float] = {}

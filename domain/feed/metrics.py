"""The feed's Prometheus counters, by variant: CTR and accept rate per weight set;
and the training runs of the learned ranker, by outcome.

CTR = profile views / impressions; accept rate = accepts / requests, each
counted for the variant of the user who saw the feed.
"""

from __future__ import annotations

from core.metrics import LATENCY_BUCKETS_S, CollectorRegistry, Counter, Histogram


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.impressions = Counter(
            "feed_impressions_total",
            "Profiles served in feed pages",
            ["variant"],
            registry=registry,
        )
        self.profile_views = Counter(
            "feed_profile_views_total",
            "Profiles opened from the feed",
            ["variant"],
            registry=registry,
        )
        self.requests = Counter(
            "feed_requests_total",
            "Connection requests sent from the feed",
            ["variant"],
            registry=registry,
        )
        self.accepts = Counter(
            "feed_accepts_total",
            "Connection requests sent from the feed and accepted",
            ["variant"],
            registry=registry,
        )
        self.events = Counter(
            "feed_events_total",
            "Feed events recorded for training, by kind (or kind=error when the write failed)",
            ["kind"],
            registry=registry,
        )
        self.pages = Counter(
            "feed_pages_total",
            "Feed pages by cache outcome (hit, miss)",
            ["cache"],
            registry=registry,
        )
        self.compute = Histogram(
            "feed_compute_seconds",
            "Time to rank one user's feed (uncached)",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )


class TrainingMetrics:
    """The learned ranker's nightly training (domain/feed/training.py), in the process
    that trains: a worker, or ``devconnect recs train``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "feed_training_runs_total",
            "Training runs by outcome: promoted, refused (held-out NDCG did not improve), "
            "too_little_data (the ranker in service stays)",
            ["outcome"],
            registry=registry,
        )

"""restd's Prometheus metrics, registered on the app's own registry (STYLE 9)."""

from __future__ import annotations

from core.metrics import LATENCY_BUCKETS_S, CollectorRegistry, Counter, Histogram


class RestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "restd_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "restd_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.login_failures = Counter(
            "restd_login_failures_total",
            "Refused logins by reason (credentials, locked, rate, busy)",
            ["reason"],
            registry=registry,
        )
        self.signups = Counter("restd_signups_total", "Accounts created", registry=registry)
        self.password_hashes = Counter(
            "restd_password_hashes_total",
            "argon2id runs (op: hash, verify), each holding its memory cost while it runs",
            ["op"],
            registry=registry,
        )
        self.password_hash_busy = Counter(
            "restd_password_hash_busy_total",
            "Requests refused (503) because no hashing slot freed up within the wait",
            registry=registry,
        )
        self.body_refusals = Counter(
            "restd_body_too_large_total",
            "Requests refused (413) for a body over their route's limit",
            ["route"],
            registry=registry,
        )
        self.refresh_reuse = Counter(
            "restd_refresh_reuse_total",
            "Refresh tokens presented again after rotation (family revoked)",
            registry=registry,
        )

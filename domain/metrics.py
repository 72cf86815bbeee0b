"""restd's Prometheus metrics, registered on the app's own registry (STYLE 9)."""

from __future__ import annotations

from core.metrics import CollectorRegistry, MetricFactory


class RestMetrics:
    """HTTP traffic, then the password-hashing pool, then accounts (signups, logins, refresh)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        m = MetricFactory(registry)
        self.requests = m.counter(
            "restd_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
        )
        self.latency = m.histogram(
            "restd_request_duration_seconds", "HTTP request latency by route template", ["route"]
        )
        self.body_refusals = m.counter(
            "restd_body_too_large_total",
            "Requests refused (413) for a body over their route's limit",
            ["route"],
        )
        self.password_hashes = m.counter(
            "restd_password_hashes_total",
            "argon2id runs (op: hash, verify), each holding its memory cost while it runs",
            ["op"],
        )
        self.password_hash_busy = m.counter(
            "restd_password_hash_busy_total",
            "Requests refused (503) because no hashing slot freed up within the wait",
        )
        self.signups = m.counter("restd_signups_total", "Accounts created")
        self.login_failures = m.counter(
            "restd_login_failures_total",
            "Refused logins by reason (credentials, locked, rate, busy)",
            ["reason"],
        )
        self.refresh_reuse = m.counter(
            "restd_refresh_reuse_total",
            "Refresh tokens presented again after rotation (family revoked)",
        )

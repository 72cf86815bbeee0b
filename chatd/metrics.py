"""chatd's Prometheus metrics, registered on the registry the daemon's main() builds."""

from __future__ import annotations

from core.metrics import LATENCY_BUCKETS_S, CollectorRegistry, Counter, Gauge, Histogram


class ChatMetrics:
    """chatd's metrics, registered in groups by the helpers below (in this order)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._register_traffic(registry)
        self._register_background(registry)
        self._register_lifecycle(registry)

    def _register_traffic(self, registry: CollectorRegistry) -> None:
        """Sockets opened and closed; frames and messages received, stored, sent, refused."""
        self.open_sockets = Gauge(
            "chatd_open_sockets", "Open websocket connections", registry=registry
        )
        self.connects = Counter(
            "chatd_connects_total", "Accepted websocket connections", registry=registry
        )
        self.handshake_refusals = Counter(
            "chatd_handshake_refusals_total",
            "Upgrades refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.disconnects = Counter(
            "chatd_disconnects_total", "Closed websocket connections", registry=registry
        )
        self.messages_received = Counter(
            "chatd_messages_received_total", "private-message frames received", registry=registry
        )
        self.messages_persisted = Counter(
            "chatd_messages_persisted_total", "Messages durably stored", registry=registry
        )
        self.messages_delivered = Counter(
            "chatd_messages_delivered_total",
            "incoming-message frames sent to sockets",
            registry=registry,
        )
        self.errors = Counter(
            "chatd_errors_total", "error frames sent, by code", ["code"], registry=registry
        )
        self.rate_limited = Counter(
            "chatd_rate_limited_total",
            "Frames refused by rate limits",
            ["event"],
            registry=registry,
        )
        self.slow_consumer_drops = Counter(
            "chatd_slow_consumer_disconnects_total",
            "Sockets closed because their outgoing buffer was full",
            registry=registry,
        )
        self.shed_frames = Counter(
            "chatd_shed_frames_total", "Ephemeral frames shed under backpressure", registry=registry
        )

    def _register_background(self, registry: CollectorRegistry) -> None:
        """Commits, fan-out, presence, the bus and background store writes."""
        self.persist_latency = Histogram(
            "chatd_persist_latency_seconds",
            "Time to commit one batch of messages",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.persist_batch = Histogram(
            "chatd_persist_batch_size",
            "Messages per committed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=registry,
        )
        self.fanout_latency = Histogram(
            "chatd_receive_to_fanout_seconds",
            "From a private-message frame's arrival to its fan-out to recipients",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.presence_changes = Counter(
            "chatd_presence_changes_total",
            "Users going online or offline",
            ["status"],
            registry=registry,
        )
        self.bus_errors = Counter(
            "chatd_bus_errors_total",
            "Redis routing failures (publish or listen)",
            ["op"],
            registry=registry,
        )
        self.store_errors = Counter(
            "chatd_store_errors_total",
            "Background store writes that failed or were shed (op: inbox-flush, inbox-shed, "
            "last-seen); the messages themselves are never among them",
            ["op"],
            registry=registry,
        )

    def _register_lifecycle(self, registry: CollectorRegistry) -> None:
        """Admission, hello, token expiry, the event loop and drain."""
        self.opening = Gauge(
            "chatd_opening_sockets",
            "Sockets accepted and waiting for or running hello's reads (admission)",
            registry=registry,
        )
        self.hello_latency = Histogram(
            "chatd_hello_seconds",
            "From the upgrade to hello sent, admission wait included",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.tokens_expired = Counter(
            "chatd_tokens_expired_total",
            "Sockets closed (4002) because their access token expired without renewal",
            registry=registry,
        )
        self.loop_lag = Histogram(
            "chatd_loop_lag_seconds",
            "How late a periodic timer fires: time the event loop was busy elsewhere",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.draining = Gauge(
            "chatd_draining", "1 while the node drains for shutdown", registry=registry
        )

    def observe_commit(self, size: int, seconds: float) -> None:
        """One group commit: its batch size and how long the store took."""
        self.persist_batch.observe(size)
        self.persist_latency.observe(seconds)

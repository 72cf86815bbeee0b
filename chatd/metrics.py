"""chatd's Prometheus metrics, registered on the registry the daemon's main() builds."""

from __future__ import annotations

from core.metrics import CollectorRegistry, MetricFactory


class ChatMetrics:
    """chatd's metrics, registered in groups by the helpers below (in this order)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        metrics = MetricFactory(registry)
        self._register_traffic(metrics)
        self._register_background(metrics)
        self._register_lifecycle(metrics)

    def _register_traffic(self, m: MetricFactory) -> None:
        """Sockets opened and closed; frames and messages received, stored, sent, refused."""
        self.open_sockets = m.gauge("chatd_open_sockets", "Open websocket connections")
        self.connects = m.counter("chatd_connects_total", "Accepted websocket connections")
        self.handshake_refusals = m.counter(
            "chatd_handshake_refusals_total", "Upgrades refused, by reason", ["reason"]
        )
        self.disconnects = m.counter("chatd_disconnects_total", "Closed websocket connections")
        self.messages_received = m.counter(
            "chatd_messages_received_total", "private-message frames received"
        )
        self.messages_persisted = m.counter(
            "chatd_messages_persisted_total", "Messages durably stored"
        )
        self.messages_delivered = m.counter(
            "chatd_messages_delivered_total", "incoming-message frames sent to sockets"
        )
        self.errors = m.counter("chatd_errors_total", "error frames sent, by code", ["code"])
        self.rate_limited = m.counter(
            "chatd_rate_limited_total", "Frames refused by rate limits", ["event"]
        )
        self.slow_consumer_drops = m.counter(
            "chatd_slow_consumer_disconnects_total",
            "Sockets closed because their outgoing buffer was full",
        )
        self.shed_frames = m.counter(
            "chatd_shed_frames_total", "Ephemeral frames shed under backpressure"
        )

    def _register_background(self, m: MetricFactory) -> None:
        """Commits, fan-out, presence, the bus and background store writes."""
        self.persist_latency = m.histogram(
            "chatd_persist_latency_seconds", "Time to commit one batch of messages"
        )
        self.persist_batch = m.histogram(
            "chatd_persist_batch_size",
            "Messages per committed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
        )
        self.fanout_latency = m.histogram(
            "chatd_receive_to_fanout_seconds",
            "From a private-message frame's arrival to its fan-out to recipients",
        )
        self.presence_changes = m.counter(
            "chatd_presence_changes_total", "Users going online or offline", ["status"]
        )
        self.bus_errors = m.counter(
            "chatd_bus_errors_total", "Redis routing failures (publish or listen)", ["op"]
        )
        self.store_errors = m.counter(
            "chatd_store_errors_total",
            "Background store writes that failed or were shed (op: inbox-flush, inbox-shed, "
            "last-seen); the messages themselves are never among them",
            ["op"],
        )

    def _register_lifecycle(self, m: MetricFactory) -> None:
        """Admission, hello, token expiry, the event loop and drain."""
        self.opening = m.gauge(
            "chatd_opening_sockets",
            "Sockets accepted and waiting for or running hello's reads (admission)",
        )
        self.hello_latency = m.histogram(
            "chatd_hello_seconds", "From the upgrade to hello sent, admission wait included"
        )
        self.tokens_expired = m.counter(
            "chatd_tokens_expired_total",
            "Sockets closed (4002) because their access token expired without renewal",
        )
        self.loop_lag = m.histogram(
            "chatd_loop_lag_seconds",
            "How late a periodic timer fires: time the event loop was busy elsewhere",
        )
        self.gc_pause = m.histogram(
            "chatd_gc_pause_seconds",
            "Garbage collections, by generation, and how long each held the interpreter",
            ["generation"],
        )
        self.draining = m.gauge("chatd_draining", "1 while the node drains for shutdown")

    def observe_commit(self, size: int, seconds: float) -> None:
        """One group commit: its batch size and how long the store took."""
        self.persist_batch.observe(size)
        self.persist_latency.observe(seconds)

"""Payment counters on the owning process's registry (STYLE 9).

The success rate the design asks to watch is
``completed / (completed + failed + expired)`` over ``payments_orders_total``:
in PromQL ``sum(rate(payments_orders_total{outcome="completed"}[1h])) /
sum(rate(payments_orders_total{outcome=~"completed|failed|expired"}[1h]))``;
``payments_success_ratio`` is the same ratio over this process's lifetime.
"""

from __future__ import annotations

from core.metrics import CollectorRegistry, MetricFactory

ORDER_OUTCOMES = ("created", "completed", "failed", "expired", "provider_error")
TERMINAL_OUTCOMES = ("completed", "failed", "expired")


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        m = MetricFactory(registry)
        self.orders = m.counter(
            "payments_orders_total",
            "Orders by outcome (created, completed, failed, expired, provider_error)",
            ["outcome"],
        )
        self.transitions = m.counter(
            "payments_transitions_total",
            "Applied transitions by target state and source (webhook, status, reconcile, create)",
            ["state", "source"],
        )
        self.webhooks = m.counter(
            "payments_webhooks_total",
            "Webhooks by result: applied, duplicate, ignored, or rejected_<reason>",
            ["result"],
        )
        self.grants = m.counter("payments_membership_grants_total", "Membership extensions applied")
        self.success_ratio = m.gauge(
            "payments_success_ratio",
            "Completed over terminal orders settled by this process (1 before any)",
        )
        self.success_ratio.set_function(self._ratio)
        for outcome in ORDER_OUTCOMES:
            self.orders.labels(outcome)  # exported at 0 from the start

    def _ratio(self) -> float:
        values = {o: self.orders.labels(o)._value.get() for o in TERMINAL_OUTCOMES}
        total = sum(values.values())
        return values["completed"] / total if total else 1.0

    def outcome(self, outcome: str) -> None:
        self.orders.labels(outcome).inc()

    def webhook(self, result: str) -> None:
        self.webhooks.labels(result).inc()

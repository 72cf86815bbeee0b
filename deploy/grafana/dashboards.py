"""DevConnect's Grafana dashboards as code (grafanalib).

    python deploy/grafana/dashboards.py     # rewrites deploy/grafana/*.json

The committed JSON must equal what this script generates
(tests/test_ops_dashboards.py), and every metric a panel reads must be one a
service exposes or a recording rule defines (the drift check in
tests/test_ops_prometheus.py). A panel for a metric that does not exist yet is
not drawn: it is listed in PANELS_TO_ADD and shown on its dashboard as a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    Dashboard,
    GridPos,
    Target,
    Template,
    Templating,
    Text,
    TimeSeries,
)

HERE = Path(__file__).resolve().parent
DATASOURCE = "${datasource}"
WIDTH = 12
HEIGHT = 8

# Panels the issue asks for whose metrics no service exposes yet. Add each one
# here when its metric lands (and take it off this list).
PANELS_TO_ADD: dict[str, list[str]] = {
    "rest": [
        "Feed cache hit rate (needs a feed cache hit/miss counter in restd)",
    ],
    "workers": [
        "Email failure rate (needs the email tasks; then "
        'worker_tasks_total{task=~"workers[.]email[.].*"} by outcome)',
    ],
    "payments": [
        "Payment success rate (needs a payments-by-state counter in restd/workers)",
        "Webhook outcomes by verdict (needs a webhook counter labelled by signature/result)",
    ],
}


def panel(title: str, exprs: dict[str, str], unit: str, slot: int, **kw: Any) -> TimeSeries:
    """A time series at the slot-th place of a two-column grid."""
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i))
            for i, (legend, expr) in enumerate(exprs.items())
        ],
        unit=unit,
        gridPos=GridPos(h=HEIGHT, w=WIDTH, x=(slot % 2) * WIDTH, y=(slot // 2) * HEIGHT),
        **kw,
    )


def todo_note(key: str, slot: int) -> list[Text]:
    items = PANELS_TO_ADD.get(key)
    if not items:
        return []
    body = "**Panels to add when their metrics exist:**\n\n" + "\n".join(f"- {i}" for i in items)
    return [
        Text(
            title="Not yet instrumented",
            content=body,
            mode="markdown",
            gridPos=GridPos(h=HEIGHT // 2, w=2 * WIDTH, x=0, y=(slot // 2 + 1) * HEIGHT),
        )
    ]


def dashboard(uid: str, title: str, panels: list[Any]) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        tags=["devconnect"],
        timezone="utc",
        refresh="30s",
        templating=Templating(
            list=[
                Template(
                    name="datasource",
                    type="datasource",
                    query="prometheus",
                    default="Prometheus",
                )
            ]
        ),
        panels=panels,
    ).auto_panel_ids()


def q(expr: str) -> str:
    """Write ``[RI]`` for Grafana's rate window, which fits any scrape interval."""
    return expr.replace("[RI]", "[$__rate_interval]")


def chat() -> Dashboard:
    p99 = "histogram_quantile(0.99, sum by (le) (rate({}_bucket[RI])))"
    p50 = "histogram_quantile(0.50, sum by (le) (rate({}_bucket[RI])))"
    panels = [
        panel(
            "Open sockets by node",
            {"{{instance}}": "sum by (instance) (chatd_open_sockets)"},
            "short",
            0,
        ),
        panel(
            "Connect and disconnect rate",
            {
                "connects": q("sum(rate(chatd_connects_total[RI]))"),
                "disconnects": q("sum(rate(chatd_disconnects_total[RI]))"),
                "refused {{reason}}": q(
                    "sum by (reason) (rate(chatd_handshake_refusals_total[RI]))"
                ),
            },
            "ops",
            1,
        ),
        panel(
            "Message rate",
            {
                "received": q("sum(rate(chatd_messages_received_total[RI]))"),
                "persisted": q("sum(rate(chatd_messages_persisted_total[RI]))"),
                "delivered": q("sum(rate(chatd_messages_delivered_total[RI]))"),
            },
            "ops",
            2,
        ),
        panel(
            "Receive to fan-out latency (server side of ack and end-to-end)",
            {
                "p50": q(p50.format("chatd_receive_to_fanout_seconds")),
                "p99": q(p99.format("chatd_receive_to_fanout_seconds")),
                "p99 (5m, recorded)": "max(job:chatd_receive_to_fanout_seconds:p99_5m)",
            },
            "s",
            3,
        ),
        panel(
            "Group commit latency and batch size",
            {
                "commit p99": q(p99.format("chatd_persist_latency_seconds")),
                "batch p50": q(p50.format("chatd_persist_batch_size")),
            },
            "s",
            4,
        ),
        panel(
            "Shed and rate-limited frames, slow consumers",
            {
                "shed": q("sum(rate(chatd_shed_frames_total[RI]))"),
                "rate limited {{event}}": q("sum by (event) (rate(chatd_rate_limited_total[RI]))"),
                "slow consumers closed": q("sum(rate(chatd_slow_consumer_disconnects_total[RI]))"),
            },
            "ops",
            5,
        ),
        panel(
            "Presence churn",
            {"{{status}}": q("sum by (status) (rate(chatd_presence_changes_total[RI]))")},
            "ops",
            6,
        ),
        panel(
            "Errors sent and routing failures",
            {
                "{{code}}": q("sum by (code) (rate(chatd_errors_total[RI]))"),
                "bus {{op}}": q("sum by (op) (rate(chatd_bus_errors_total[RI]))"),
                "draining nodes": "sum(chatd_draining)",
            },
            "ops",
            7,
        ),
        panel(
            "Event-loop lag and the garbage collector's share of time",
            {
                "loop lag p99": q(p99.format("chatd_loop_lag_seconds")),
                "gc gen {{generation}} (s per s)": q(
                    "sum by (generation) (rate(chatd_gc_pause_seconds_sum[RI]))"
                ),
            },
            "s",
            8,
        ),
    ]
    return dashboard("devconnect-chat", "DevConnect / Chat", panels)


def rest() -> Dashboard:
    panels = [
        panel(
            "Request rate by route",
            {"{{method}} {{route}}": q("sum by (route, method) (rate(restd_requests_total[RI]))")},
            "reqps",
            0,
        ),
        panel(
            "Errors by route and status",
            {
                "{{route}} {{status}}": q(
                    'sum by (route, status) (rate(restd_requests_total{status=~"5..|4.."}[RI]))'
                ),
                "5xx ratio (5m, recorded)": "max(job:restd_request_errors:ratio5m)",
            },
            "reqps",
            1,
        ),
        panel(
            "Latency p99 by route",
            {
                "{{route}}": q(
                    "histogram_quantile(0.99, sum by (route, le) "
                    "(rate(restd_request_duration_seconds_bucket[RI])))"
                )
            },
            "s",
            2,
        ),
        panel(
            "Auth: signups, refused logins, refresh reuse",
            {
                "signups": q("sum(rate(restd_signups_total[RI]))"),
                "login refused {{reason}}": q(
                    "sum by (reason) (rate(restd_login_failures_total[RI]))"
                ),
                "refresh reuse": q("sum(rate(restd_refresh_reuse_total[RI]))"),
            },
            "ops",
            3,
        ),
        *todo_note("rest", 3),
    ]
    return dashboard("devconnect-rest", "DevConnect / REST", panels)


def workers() -> Dashboard:
    panels = [
        panel(
            "Backlog by queue",
            {"{{queue}}": "max by (queue) (worker_queue_length)"},
            "short",
            0,
        ),
        panel(
            "Task outcomes",
            {"{{task}} {{outcome}}": q("sum by (task, outcome) (rate(worker_tasks_total[RI]))")},
            "ops",
            1,
        ),
        panel(
            "Task duration p95",
            {
                "{{task}}": q(
                    "histogram_quantile(0.95, sum by (task, le) "
                    "(rate(worker_task_duration_seconds_bucket[RI])))"
                )
            },
            "s",
            2,
        ),
        panel(
            "Broker health and memory",
            {
                "up": "min(worker_broker_up)",
                "used bytes": "max(worker_broker_memory_used_bytes)",
                "maxmemory": "max(worker_broker_memory_max_bytes)",
            },
            "short",
            3,
        ),
        *todo_note("workers", 3),
    ]
    return dashboard("devconnect-workers", "DevConnect / Workers", panels)


def payments() -> Dashboard:
    panels = [
        panel(
            "Payment endpoints by status",
            {
                "{{route}} {{status}}": q(
                    "sum by (route, status) "
                    '(rate(restd_requests_total{route=~"/api/payments.*"}[RI]))'
                )
            },
            "reqps",
            0,
        ),
        panel(
            "Payment task outcomes",
            {
                "{{task}} {{outcome}}": q(
                    "sum by (task, outcome) "
                    '(rate(worker_tasks_total{task=~"workers[.]payments[.].*"}[RI]))'
                )
            },
            "ops",
            1,
        ),
        *todo_note("payments", 1),
    ]
    return dashboard("devconnect-payments", "DevConnect / Payments", panels)


def build() -> dict[str, str]:
    """{file name: JSON text} for every dashboard."""
    boards = {"chat": chat(), "rest": rest(), "workers": workers(), "payments": payments()}
    return {
        f"{name}.json": json.dumps(
            board.to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True
        )
        + "\n"
        for name, board in boards.items()
    }


def main() -> int:
    for name, text in build().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

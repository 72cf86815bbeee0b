"""Grafana dashboards: the committed JSON is exactly what deploy/grafana/dashboards.py generates."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

from tests.ops_harness import GRAFANA_DIR


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards", GRAFANA_DIR / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_equal_the_generated_ones() -> None:
    generated = generator().build()
    committed = {p.name: p.read_text() for p in GRAFANA_DIR.glob("*.json")}
    assert set(committed) == set(generated), "run: python deploy/grafana/dashboards.py"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run python deploy/grafana/dashboards.py"


def test_dashboards_cover_the_issue_panels() -> None:
    titles = {
        p.stem: {panel["title"] for panel in json.loads(p.read_text())["panels"]}
        for p in GRAFANA_DIR.glob("*.json")
    }
    assert {"Open sockets by node", "Message rate", "Presence churn"} <= titles["chat"]
    assert "Latency p99 by route" in titles["rest"]
    assert {"Backlog by queue", "Task outcomes"} <= titles["workers"]
    assert "Payment task outcomes" in titles["payments"]
    # What cannot be drawn yet is said on the dashboard itself.
    assert "Not yet instrumented" in titles["payments"]

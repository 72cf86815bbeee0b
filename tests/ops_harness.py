"""Helpers for the operations tests: promtool/prometheus, metric names in PromQL and /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = [PROM_DIR / "rules" / "recording.yml", PROM_DIR / "rules" / "alerts.yml"]
GRAFANA_DIR = ROOT / "deploy" / "grafana"
EXTERNAL_METRICS = PROM_DIR / "external-metrics.yml"
APT_TIMEOUT_S = 300


def prometheus_tool(name: str) -> str:
    """``promtool`` or ``prometheus`` on PATH; installed from Debian's package when root."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            check=False,
            capture_output=True,
            timeout=APT_TIMEOUT_S,
        )
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{name} not on PATH and not installable here (needs root and apt-get)")


# -- metric names in PromQL -------------------------------------------------------------

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
# Grafana template variables ($__rate_interval, $job) are not metrics.
_TEMPLATE_VAR = re.compile(r"\$\{?\w+\}?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords removed)."""
    text = _TEMPLATE_VAR.sub("1m", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group(1)
        if name.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def rule_groups(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def recorded_names(paths: list[Path]) -> set[str]:
    return {r["record"] for p in paths for g in rule_groups(p) for r in g["rules"] if "record" in r}


def rule_metric_uses(paths: list[Path]) -> dict[str, set[str]]:
    """{rule name: metric names its expression reads}."""
    uses: dict[str, set[str]] = {}
    for path in paths:
        for group in rule_groups(path):
            for rule in group["rules"]:
                uses[rule.get("alert") or rule["record"]] = metric_names(rule["expr"])
    return uses


def dashboard_metric_uses(directory: Path = GRAFANA_DIR) -> dict[str, set[str]]:
    """{"dashboard / panel": metric names} for every committed dashboard JSON."""
    uses: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    key = f"{path.stem} / {panel.get('title')}"
                    uses[key] = uses.get(key, set()) | metric_names(expr)
    return uses


# -- names a live /metrics exposes ------------------------------------------------------

_SUFFIXES = {
    "counter": ("", "_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "untyped": ("",),
    "info": ("_info",),
}


def exposed_names(text: str) -> set[str]:
    """Every sample name an exposition can carry, from its ``# TYPE`` lines.

    TYPE lines are there for every registered metric, even a labelled one that
    has no child yet, so a rule is not called drifted just because nothing
    happened before the scrape.
    """
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + s for s in _SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def external_names() -> set[str]:
    """Metrics that come from other exporters (Prometheus itself, node_exporter, ...)."""
    data = yaml.safe_load(EXTERNAL_METRICS.read_text())
    return {name for source in data["sources"] for name in source["metrics"]}


def drifted(uses: dict[str, set[str]], known: set[str]) -> dict[str, set[str]]:
    """{rule or panel: names it reads that no service, recording rule or exporter provides}."""
    return {where: names - known for where, names in uses.items() if names - known}

"""Prometheus: configs and rules pass promtool, every alert has a unit test, a real
server scrapes a running restd, chatd and worker, and no rule or dashboard drifts
from the metric names the services really expose."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.embedded import free_port
from core.settings import Settings
from tests.harness import Services, make_settings, service_process
from tests.ops_harness import (
    PROM_DIR,
    RULE_FILES,
    dashboard_metric_uses,
    drifted,
    exposed_names,
    external_names,
    prometheus_tool,
    recorded_names,
    rule_groups,
    rule_metric_uses,
)
from tests.test_worker_metrics import prefork_worker

ROOT = Path(__file__).resolve().parent.parent
SCRAPE_WAIT_S = 40.0
PROMETHEUS_STOP_S = 10.0


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_config() -> None:
    promtool = prometheus_tool("promtool")
    for config in ("prometheus.yml", "prometheus.local.yml"):
        result = run([promtool, "check", "config", str(PROM_DIR / config)])
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    promtool = prometheus_tool("promtool")
    result = run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    promtool = prometheus_tool("promtool")
    tests_file = PROM_DIR / "tests" / "alerts_test.yml"
    result = run([promtool, "test", "rules", str(tests_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {
        r["alert"] for g in rule_groups(PROM_DIR / "rules" / "alerts.yml") for r in g["rules"]
    }
    fired, quiet = set(), set()
    for case in yaml.safe_load(tests_file.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - fired == set(), "alerts without a test that makes them fire"
    assert alerts - quiet == set(), "alerts without a test that keeps them quiet"


def test_every_alert_has_a_summary_and_a_runbook_paragraph() -> None:
    runbook = (ROOT / "deploy" / "RUNBOOK.md").read_text()
    for group in rule_groups(PROM_DIR / "rules" / "alerts.yml"):
        for rule in group["rules"]:
            name = rule["alert"]
            assert rule["annotations"]["summary"], name
            assert rule["annotations"]["runbook_url"] == f"deploy/RUNBOOK.md#{name.lower()}"
            assert f"\n## {name}\n" in runbook, f"no RUNBOOK.md section for {name}"


def test_metric_name_extraction() -> None:
    from tests.ops_harness import metric_names

    expr = (
        'sum by (le) (rate(x_bucket{a="b", c=~"d|e"}[$__rate_interval])) '
        "/ on(job) group_left(z) y offset 5m > 0.5 and bool 1e3"
    )
    assert metric_names(expr) == {"x_bucket", "y"}
    assert metric_names("max by (job) (worker_broker_up) == 0") == {"worker_broker_up"}


# -- against a running stack ------------------------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


@pytest.fixture(scope="module")
def stack(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """restd, chatd and a prefork worker, each a real process on free ports."""
    logs = tmp_path_factory.mktemp("ops-stack")
    settings = make_settings(services, worker_metrics_port=free_port(), log_level="WARNING")
    with (
        service_process("restd", settings, settings.restd_port, logs / "restd.log"),
        service_process("chatd", settings, settings.chatd_port, logs / "chatd.log"),
        prefork_worker(settings, logs / "worker.log"),
    ):
        yield settings


def _targets(settings: Settings) -> dict[str, str]:
    """Each service's metrics port: never the public API or chat port."""
    return {
        "restd": f"127.0.0.1:{settings.restd_metrics_port}",
        "chatd": f"127.0.0.1:{settings.chatd_metrics_port}",
        "worker": f"127.0.0.1:{settings.worker_metrics_port}",
    }


def _exposed(settings: Settings) -> set[str]:
    names: set[str] = set()
    for address in _targets(settings).values():
        names |= exposed_names(_get(f"http://{address}/metrics"))
    return names


def test_drift_check_passes_for_the_committed_rules_and_dashboards(stack: Settings) -> None:
    known = _exposed(stack) | recorded_names(RULE_FILES) | external_names()
    assert drifted(rule_metric_uses(RULE_FILES), known) == {}
    uses = dashboard_metric_uses()
    assert uses, "no dashboard panels found under deploy/grafana"
    assert drifted(uses, known) == {}


def test_drift_check_fails_on_a_rule_naming_a_missing_metric(stack: Settings) -> None:
    wrong = [ROOT / "tests" / "data" / "wrong_rules.yml"]
    known = _exposed(stack) | recorded_names(RULE_FILES) | external_names()
    assert drifted(rule_metric_uses(wrong), known) == {
        "ChatTrafficStopped": {"chatd_mesages_recieved_total"}
    }


def test_real_prometheus_scrapes_every_target(stack: Settings, tmp_path: Path) -> None:
    prometheus = prometheus_tool("prometheus")
    # Traffic that creates a labelled series: a refused REST call.
    for path in ("/api/me", "/healthz"):
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{stack.restd_port}{path}", timeout=5)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in _targets(stack).items()
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
            return list(_get(url)["data"]["result"])

        # Up means scraped; a recorded series means the rules ran on scraped data.
        deadline = time.monotonic() + SCRAPE_WAIT_S
        health: dict[str, str] = {}
        recorded: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                active = _get(f"{api}/targets")["data"]["activeTargets"]
                health = {t["labels"]["job"]: t["health"] for t in active}
                recorded = query("job:chatd_open_sockets:sum")
            except OSError:
                pass
            if health == {"restd": "up", "chatd": "up", "worker": "up"} and recorded:
                break
            time.sleep(0.5)
        assert health == {"restd": "up", "chatd": "up", "worker": "up"}
        assert recorded, "the recording rules produced nothing"

        assert {r["metric"]["job"] for r in query("up == 1")} == {"restd", "chatd", "worker"}
        for expr in (
            "chatd_open_sockets",
            'restd_requests_total{route="/api/me", status="401"}',
            "worker_broker_up == 1",
            'worker_queue_length{queue="email"}',
        ):
            assert query(expr), f"no series for {expr}"
        rules = _get(f"{api}/rules")["data"]["groups"]
        bad = [
            (r["name"], r.get("lastError"))
            for g in rules
            for r in g["rules"]
            if r["health"] == "err"
        ]
        assert bad == []
        assert sum(1 for g in rules for r in g["rules"] if r["type"] == "alerting") == 12
    finally:
        proc.terminate()
        try:
            proc.wait(PROMETHEUS_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

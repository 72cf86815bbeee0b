"""The worker tier's /metrics: counted in the prefork parent; backlog and broker read live."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.embedded import free_port
from core.settings import Settings
from core.tasks import RECS_TRAIN_MODEL
from tests.harness import Services, make_settings, settings_env
from tests.workers_harness import scrape
from workers.app import make_celery
from workers.metrics import BrokerCollector

WAIT_S = 60.0


@contextmanager
def prefork_worker(settings: Settings, log_path: Path) -> Iterator[str]:
    """`devconnect worker` with the prefork pool; yields its metrics URL once it serves."""
    argv = [sys.executable, "-m", "core.cli", "worker", "--pool", "prefork"]
    argv += ["--concurrency", "2", "--include", "tests.worker_tasks"]
    argv += ["--hostname", f"{settings.node_id}@metrics"]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert proc.poll() is None, f"worker exited: {log_path.read_text()[-2000:]}"
            try:
                scrape(url)
                break
            except OSError:
                assert time.monotonic() < deadline, "worker metrics endpoint never answered"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_prefork_worker_counts_outcomes_and_durations(services: Services, tmp_path: Path) -> None:
    settings = make_settings(services, worker_metrics_port=free_port())
    app = make_celery(settings)
    with prefork_worker(settings, tmp_path / "worker.log") as url:
        oks = [app.send_task("tests.ok", args=[i]) for i in range(3)]
        booms = [app.send_task("tests.boom") for _ in range(2)]
        assert [r.get(timeout=WAIT_S) for r in oks] == [0, 1, 2]
        for r in booms:
            r.get(timeout=WAIT_S, propagate=False)
            assert r.failed()
        # The result is stored by the child before the parent hears of it: poll briefly.
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(url)
            ok = samples.get(("worker_tasks_total", (("outcome", "success"), ("task", "tests.ok"))))
            bad = samples.get(
                ("worker_tasks_total", (("outcome", "failure"), ("task", "tests.boom")))
            )
            if (ok, bad) == (3.0, 2.0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (ok, bad) == (3.0, 2.0)
        assert samples[("worker_task_duration_seconds_count", (("task", "tests.ok"),))] == 3.0
        assert samples[("worker_task_duration_seconds_count", (("task", "tests.boom"),))] == 2.0
        assert samples[("worker_tasks_received_total", (("task", "tests.ok"),))] == 3.0
        assert samples[("worker_broker_up", ())] == 1.0
        for queue in ("default", "email", "recs", "payments"):
            assert ("worker_queue_length", (("queue", queue),)) in samples


def test_the_parent_counts_the_learned_rankers_training_outcomes(
    services: Services, tmp_path: Path
) -> None:
    """The training runs in a pool child; its outcome reaches the exporter by its result."""
    settings = make_settings(services, worker_metrics_port=free_port())
    app = make_celery(settings)
    with prefork_worker(settings, tmp_path / "worker.log") as url:
        result = app.send_task(RECS_TRAIN_MODEL).get(timeout=WAIT_S)
        assert result["outcome"] == "too_little_data", result  # a new deployment: no events
        key = ("feed_training_runs_total", (("outcome", "too_little_data"),))
        deadline = time.monotonic() + 10
        while scrape(url).get(key) != 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scrape(url).get(key) == 1.0


def test_backlog_counts_waiting_messages(services: Services) -> None:
    settings = make_settings(services)
    app = make_celery(settings)
    queue = f"idle-{settings.node_id}"  # no worker consumes it
    for i in range(4):
        app.send_task("tests.ok", args=[i], queue=queue)
    app.send_task("tests.ok", args=[9], queue=queue, priority=9)
    collector = BrokerCollector(settings.broker_url, [queue])
    try:
        families = {f.name: f for f in collector.collect()}
    finally:
        collector.close()
    assert families["worker_broker_up"].samples[0].value == 1
    [sample] = families["worker_queue_length"].samples
    assert sample.labels == {"queue": queue} and sample.value == 5
    assert families["worker_broker_memory_used_bytes"].samples[0].value > 0


def test_broker_down_reads_as_zero_not_a_failed_scrape() -> None:
    collector = BrokerCollector(f"redis://127.0.0.1:{free_port()}/0", ["default"])
    try:
        families = {f.name: f for f in collector.collect()}
    finally:
        collector.close()
    assert families["worker_broker_up"].samples[0].value == 0
    assert "worker_queue_length" not in families

"""Real services for the test suite, started on free ports and stopped by PID.

Nothing here fakes I/O: MongoDB is nx-27017 (or the server at TEST_MONGO_URL),
Redis is redis-server, SMTP is the aiosmtpd sink, Celery is a real worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.embedded import ManagedProcess, free_port, mongo_process, redis_process, smtp_process
from core.settings import Settings, settings_to_env

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Services:
    mongo_url: str
    redis_urls: list[str]
    smtp_port: int
    mail_dir: Path
    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def start_services(workdir: Path) -> Services:
    procs: list[ManagedProcess] = []
    try:
        mongo_url = os.environ.get("TEST_MONGO_URL", "")
        if not mongo_url:
            mongo = mongo_process(workdir / "mongo", log_path=workdir / "mongo.log").start()
            procs.append(mongo)
            mongo_url = f"mongodb://127.0.0.1:{mongo.port}"
        redis_urls = []
        for i in range(2):  # two shards
            shard = redis_process(log_path=workdir / f"redis{i}.log").start()
            procs.append(shard)
            redis_urls.append(f"redis://127.0.0.1:{shard.port}/0")
        mail_dir = workdir / "mail"
        smtp = smtp_process(mail_dir, log_path=workdir / "smtp.log").start()
        procs.append(smtp)
    except Exception:
        for proc in reversed(procs):
            proc.stop()
        raise
    return Services(mongo_url, redis_urls, smtp.port, mail_dir, workdir, procs)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_settings(services: Services, **overrides: object) -> Settings:
    """Settings for one test: its own Mongo database and its own Redis key prefix."""
    name = unique_name()
    values: dict[str, object] = {
        "env": "test",
        "mongo_url": services.mongo_url,
        "mongo_db": name,
        "redis_urls": services.redis_urls,
        "redis_key_prefix": f"{name}:",
        "smtp_port": services.smtp_port,
        "cookie_secure": False,
        "log_format": "text",
        "var_dir": services.workdir / name,
        "restd_port": free_port(),
        "chatd_port": free_port(),
        # /metrics has a port of its own per service (core/web.py).
        "restd_metrics_port": free_port(),
        "chatd_metrics_port": free_port(),
        "node_id": name,
        "worker_metrics_port": 0,  # no exporter port clashes between test workers
        # Celery's own keys live in db 1 of the first shard, apart from the app's keys.
        "celery_broker_url": services.redis_urls[0].rsplit("/", 1)[0] + "/1",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess build the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
    env.update(settings_to_env(settings))
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextmanager
def service_process(
    name: str, settings: Settings, port: int, log_path: Path
) -> Iterator[ManagedProcess]:
    """Run ``devconnect NAME`` as a subprocess with these settings, stopped by PID afterwards."""
    proc = ManagedProcess(
        name, [sys.executable, "-m", "core.cli", name], port, log_path, settings_env(settings)
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def celery_worker(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the settings' broker; waits until it answers a ping."""
    from workers.app import make_celery

    env = settings_env(settings)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.cli",
                "worker",
                "--concurrency",
                "2",
                "--hostname",
                f"{settings.node_id}@test",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    app = make_celery(settings)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}")
            if app.control.ping(timeout=0.5):
                break
        else:
            raise RuntimeError("celery worker did not answer a ping within 60s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

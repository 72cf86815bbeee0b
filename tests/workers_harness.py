"""Helpers for the email worker tests: a real worker (optionally with beat), SMTP sinks,
the mailbox a sink writes, and the task results in the broker's result backend.

Each test gets its own broker database (Redis db 2..15 on the first shard), so
retries and redeliveries a test leaves behind can never reach another test's
worker (the shared harness puts every test's broker in db 1).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import redis

from core.embedded import ManagedProcess, free_port, smtp_process
from core.settings import Settings
from tests.harness import Services, make_settings, settings_env
from workers.app import make_celery

WAIT_S = 60.0
FIRST_BROKER_DB = 2
BROKER_DBS = 14  # Redis has 16 databases; 0 is the app's, 1 the shared harness's
_broker_dbs = itertools.count()

T = TypeVar("T")


def worker_settings(services: Services, **overrides: object) -> Settings:
    db = FIRST_BROKER_DB + next(_broker_dbs) % BROKER_DBS
    values: dict[str, object] = {
        "celery_broker_url": services.redis_urls[0].rsplit("/", 1)[0] + f"/{db}",
        "worker_metrics_port": 0,
        "log_level": "INFO",
    }
    values.update(overrides)
    settings = make_settings(services, **values)
    # A previous session's leftovers in this db would be consumed by our worker.
    redis.Redis.from_url(settings.broker_url).flushdb()
    return settings


def wait_until(check: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def await_until(check: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """``wait_until`` for async tests: sleeps without blocking an in-process chatd or restd."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextmanager
def worker(
    settings: Settings, log_path: Path, *, beat: bool = False, name: str = "w"
) -> Iterator[subprocess.Popen[bytes]]:
    """``devconnect worker`` (prefork, 2 processes; ``beat`` embeds the scheduler)."""
    argv = [sys.executable, "-m", "core.cli", "worker", "--concurrency", "2"]
    argv += ["--hostname", f"{name}-{settings.node_id}@test"]
    if beat:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", "--schedule", str(settings.var_dir / f"beat-{name}")]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killpg reaches the pool too
        )
    app = make_celery(settings)
    try:
        deadline = time.monotonic() + WAIT_S
        while not app.control.ping(timeout=0.5):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not answer a ping")
        yield proc
    finally:
        app.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool processes: no warm shutdown, nothing acknowledged."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@contextmanager
def sink(mail_dir: Path, log_path: Path, **switches: Any) -> Iterator[ManagedProcess]:
    """A dedicated SMTP sink on a free port; switches: ``refuse_first``, ``refuse_always``."""
    proc = smtp_process(mail_dir, port=free_port(), log_path=log_path, **switches).start()
    try:
        yield proc
    finally:
        proc.stop()


class Mailbox:
    """The mails a sink saved, parsed."""

    def __init__(self, mail_dir: Path) -> None:
        self.dir = mail_dir

    def all(self) -> list[EmailMessage]:
        if not self.dir.exists():
            return []
        out = []
        for path in sorted(self.dir.glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            out.append(msg)  # type: ignore[arg-type]
        return out

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.all() if address in str(m["To"])]

    def wait_for(self, count: int, timeout: float = WAIT_S) -> list[EmailMessage]:
        return wait_until(
            lambda: (m := self.all()) and len(m) >= count and m, f"{count} mails", timeout
        )


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(plain text, HTML) of a mail."""
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None, "a mail has both parts"
    return str(text.get_content()), str(html.get_content())


def task_results(settings: Settings) -> list[dict[str, Any]]:
    """Every successful task's result in this test's result backend, oldest first."""
    client = redis.Redis.from_url(settings.broker_url)
    found = []
    for key in client.scan_iter(match="celery-task-meta-*"):
        raw = client.get(key)
        if raw:
            meta = json.loads(raw)
            if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
                found.append((str(meta.get("date_done")), meta["result"]))
    client.close()
    return [result for _done, result in sorted(found, key=lambda pair: pair[0])]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples

"""Tasks only the worker-metrics test loads (``devconnect worker --include tests.worker_tasks``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tests.ok")
def ok(value: int) -> int:
    return value


@shared_task(name="tests.boom")
def boom() -> None:
    raise RuntimeError("deliberate failure for the metrics test")

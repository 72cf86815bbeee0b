"""Celery application factory and the ``devconnect worker`` / ``devconnect beat`` entry points."""

from __future__ import annotations

from celery import Celery, shared_task
from celery.schedules import crontab
from kombu.entity import Queue

from core.settings import Settings
from core.tasks import (
    EMAIL_SWEEP_OFFLINE,
    PAYMENTS_RECONCILE,
    PING,
    QUEUES,
    RECS_PRECOMPUTE_ACTIVE,
    RECS_TRAIN_MODEL,
    TASK_ROUTES,
)


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker_url
    # Results are kept briefly, for callers that wait on a task (tests, the CLI).
    backend = broker if broker.startswith(("redis://", "rediss://")) else "rpc://"
    app = Celery(
        "devconnect",
        broker=broker,
        backend=backend,
        include=["workers.payments", "workers.recs", "workers.email"],
    )
    app.conf.update(
        task_default_queue="default",
        task_queues=[Queue(name) for name in QUEUES],
        # Shared with the publishers in restd (core/tasks.py).
        task_routes=TASK_ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=120,
        task_soft_time_limit=100,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout_s,
            # Look for tasks abandoned by a dead worker every interval (kombu's
            # default scans only every tenth one).
            "unacked_restore_interval": settings.celery_restore_interval_s,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        result_expires=3600,
        beat_schedule={
            # Settles orders whose webhook never came (workers/payments.py).
            "payments-reconcile": {
                "task": PAYMENTS_RECONCILE,
                "schedule": settings.payments_reconcile_interval_s,
                "options": {"expires": settings.payments_reconcile_interval_s},
            },
            # Offline-message emails whose quiet period is over (workers/email.py).
            "email-offline-sweep": {
                "task": EMAIL_SWEEP_OFFLINE,
                "schedule": settings.email_sweep_interval_s,
                "options": {"expires": settings.email_sweep_interval_s},
            },
            # Nightly feed precompute for active users (workers/recs.py).
            "recs-precompute": {
                "task": RECS_PRECOMPUTE_ACTIVE,
                "schedule": crontab(minute=0, hour=settings.feed_precompute_hour_utc),
            },
            # Nightly training of the learned ranker, promoted only when better (workers/recs.py).
            "recs-train": {
                "task": RECS_TRAIN_MODEL,
                "schedule": crontab(minute=0, hour=settings.feed_training_hour_utc),
            },
        },
    )
    app.devconnect_settings = settings
    return app


@shared_task(name=PING)
def ping() -> str:
    return "pong"


def run_worker(settings: Settings, argv: list[str]) -> int:
    from core.logs import configure_logging
    from core.tracing import setup_tracing

    configure_logging("worker", settings.log_level, settings.log_format)
    # Before the pool forks: the SDK restarts its export thread in each child.
    tracing = setup_tracing("worker", settings)
    if tracing is not None:
        from celery.signals import worker_process_shutdown

        # A pool child exits without running atexit hooks: export what it holds.
        # Bounded: a collector that is down must not hold up the worker's exit.
        worker_process_shutdown.connect(
            lambda **_: tracing.provider.force_flush(timeout_millis=5_000), weak=False
        )
    app = make_celery(settings)
    from workers.metrics import WorkerExporter

    WorkerExporter(settings, QUEUES).install(app)
    from workers.context import install as install_context

    install_context(app)
    app.worker_main(["worker", "--loglevel", settings.log_level, "-Q", ",".join(QUEUES), *argv])
    return 0


def run_beat(settings: Settings, _argv: list[str]) -> int:
    from core.logs import configure_logging
    from core.tracing import setup_tracing

    configure_logging("beat", settings.log_level, settings.log_format)
    setup_tracing("beat", settings)
    app = make_celery(settings)
    schedule = settings.var_dir / "celerybeat-schedule"
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app.Beat(loglevel=settings.log_level, schedule=str(schedule)).run()
    return 0

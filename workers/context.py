"""What email tasks need, built once per worker process (STYLE 6; arq's ctx).

Celery tasks are synchronous functions, so they use pymongo's and redis-py's
synchronous clients. Neither survives a fork, so the context is built in each
pool process (``worker_process_init``), never at import, and kept on the Celery
app object; a process that was not initialised that way (solo pool, a task run
eagerly) builds its own on first use. Nothing is module-global (STYLE 9).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, signals
from pymongo import MongoClient
from pymongo.database import Database

from core.emailprefs import UnsubscribeTokens
from core.keys import Keys
from core.mongo import Doc
from core.settings import Settings
from core.sharding import shard_for
from workers.mailer import Mailer, MailTemplates, SmtpConfig

log = logging.getLogger(__name__)

CONTEXT_ATTR = "devconnect_worker_context"
MONGO_TIMEOUT_MS = 5000
REDIS_TIMEOUT_S = 5.0


@dataclass
class WorkerContext:
    settings: Settings
    mongo: MongoClient[Doc]
    db: Database[Doc]
    shards: list[redis.Redis]
    keys: Keys
    mailer: Mailer
    tokens: UnsubscribeTokens
    pid: int

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        if not settings.mongo_url or not settings.redis_urls:
            raise RuntimeError("workers need DEVCONNECT_MONGO_URL and DEVCONNECT_REDIS_URLS")
        mongo: MongoClient[Doc] = MongoClient(
            settings.mongo_url,
            tz_aware=True,
            appname="devconnect-worker",
            serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
            connectTimeoutMS=MONGO_TIMEOUT_MS,
        )
        shards = [
            redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
            for url in settings.redis_urls
        ]
        smtp = SmtpConfig(
            settings.smtp_host, settings.smtp_port, settings.smtp_timeout_s, settings.mail_from
        )
        return cls(
            settings=settings,
            mongo=mongo,
            db=mongo[settings.mongo_db],
            shards=shards,
            keys=Keys(settings.redis_key_prefix),
            mailer=Mailer(smtp, MailTemplates()),
            tokens=UnsubscribeTokens(settings.jwt_secret, settings.unsubscribe_token_max_age_s),
            pid=os.getpid(),
        )

    def redis_for(self, user_id: str) -> redis.Redis:
        return self.shards[shard_for(user_id, len(self.shards))]

    def close(self) -> None:
        for client in self.shards:
            client.close()
        self.mongo.close()


def context_of(app: Celery) -> WorkerContext:
    """This process's context, built on first use (and again after a fork)."""
    ctx: WorkerContext | None = getattr(app, CONTEXT_ATTR, None)
    if ctx is None or ctx.pid != os.getpid():
        ctx = WorkerContext.build(app.devconnect_settings)
        setattr(app, CONTEXT_ATTR, ctx)
    return ctx


def install(app: Celery) -> None:
    """Build each pool process's context as it starts, and close it as it ends."""

    def on_process_init(**_kw: Any) -> None:
        context_of(app)

    def on_process_shutdown(**_kw: Any) -> None:
        ctx: WorkerContext | None = getattr(app, CONTEXT_ATTR, None)
        if ctx is not None and ctx.pid == os.getpid():
            ctx.close()
            setattr(app, CONTEXT_ATTR, None)

    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)

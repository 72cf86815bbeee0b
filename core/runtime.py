"""The stores every service opens: Mongo, the Redis shards and their readiness checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from core.health import Readiness
from core.keys import Keys
from core.mongo import Doc, make_client, ping
from core.redis import RedisShards
from core.settings import Settings


@dataclass
class Stores:
    settings: Settings
    mongo: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]
    redis: RedisShards
    keys: Keys
    readiness: Readiness

    async def close(self) -> None:
        await self.redis.close()
        await self.mongo.close()


def open_stores(settings: Settings, **mongo_options: object) -> Stores:
    if not settings.mongo_url:
        raise ValueError("DEVCONNECT_MONGO_URL is not set (`devconnect up` starts one)")
    if not settings.redis_urls:
        raise ValueError(
            "DEVCONNECT_REDIS_URLS is not set (`devconnect up` starts an embedded one)"
        )
    options: dict[str, object] = {
        "maxPoolSize": settings.mongo_pool_max,
        "connectTimeoutMS": int(settings.mongo_connect_timeout_s * 1000),
        **mongo_options,
    }
    mongo = make_client(settings.mongo_url, **options)
    db = mongo[settings.mongo_db]
    redis = RedisShards(
        settings.redis_urls,
        pool_max=settings.redis_pool_max,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    readiness = Readiness()
    readiness.add("mongo", lambda: ping(db))
    for index, client in enumerate(redis.clients):
        readiness.add(f"redis[{index}]", client.ping)
    return Stores(settings, mongo, db, redis, Keys(settings.redis_key_prefix), readiness)


def run_service(
    name: str, settings: Settings, serve: Callable[[Settings], Coroutine[Any, Any, None]]
) -> int:
    """A service process's main: logging and tracing set up, ``serve`` run to the end."""
    from core.logs import configure_logging
    from core.tracing import setup_tracing

    configure_logging(name, settings.log_level, settings.log_format)
    tracing = setup_tracing(name, settings)
    try:
        asyncio.run(serve(settings))
    finally:
        if tracing is not None:
            tracing.shutdown()
    return 0

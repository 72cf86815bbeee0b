"""A new connection queues a recompute of both users' feeds, which a real worker runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.runtime import open_stores
from tests.harness import Services, celery_worker, make_settings
from tests.restd_harness import running_restd


async def test_a_new_connection_gets_both_feeds_recomputed_by_the_worker(
    services: Services, tmp_path: Path
) -> None:
    settings = make_settings(services, rate_signup_ip_count=100)
    with celery_worker(settings, tmp_path / "worker.log"):
        async with running_restd(settings) as api:
            users = [await api.signup() for _ in range(4)]
            stores = open_stores(settings)
            try:
                pointers = [stores.keys.recommendations(u.id) for u in users[:2]]
                for key, user in zip(pointers, users[:2], strict=True):
                    assert await stores.redis.for_user(user.id).get(key) is None
                await api.connect(users[0], users[1])  # request, then accept
                for _ in range(150):
                    found = [
                        await stores.redis.for_user(u.id).get(k)
                        for k, u in zip(pointers, users[:2], strict=True)
                    ]
                    if all(found):
                        break
                    await asyncio.sleep(0.1)
                assert all(found), "the worker did not recompute both feeds"
                # Nobody asked for the others' feeds: nothing was computed for them.
                other = users[3]
                assert (
                    await stores.redis.for_user(other.id).get(stores.keys.recommendations(other.id))
                    is None
                )
            finally:
                await stores.close()

"""Batch precompute fills the feed cache; the page then comes from that snapshot."""

from __future__ import annotations

from core.runtime import open_stores
from domain.feed.precompute import precompute_with
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd


async def test_precompute_fills_the_cache_in_batches_and_the_feed_serves_it(
    services: Services,
) -> None:
    settings = make_settings(services, rate_signup_ip_count=100)
    async with running_restd(settings) as api:
        users = [await api.signup() for _ in range(5)]
        await api.connect(users[0], users[1])
        await api.connect(users[1], users[2])
        stores = open_stores(settings)
        lines: list[str] = []
        try:
            done = await precompute_with(stores, batch=2, active_days=1, progress=lines.append)
            pointers = [
                await stores.redis.for_user(u.id).get(stores.keys.recommendations(u.id))
                for u in users
            ]
        finally:
            await stores.close()
        assert done == 5
        # First the feature store is warmed, then batches of 2, 2 and 1, a line each.
        assert lines[:2] == ["read 2 connections", "stored 5 cards and connection lists"]
        assert [line.split(":")[0] for line in lines[2:]] == ["batch 1", "batch 2", "batch 3"]
        assert all(pointers)
        page = (await users[0].http.get("/api/feed")).json()
        assert page["nextCursor"] is None or page["nextCursor"].startswith(pointers[0].decode())
        assert users[2].id in [i["profile"]["id"] for i in page["items"]]

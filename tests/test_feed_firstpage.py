"""The feature store is written ahead of a first page: at sign-up, on a connection, by backfill."""

from __future__ import annotations

import orjson

from core.keys import FeedKeys
from core.runtime import Stores
from domain.feed.featurestore import FeatureStore
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd

NEIGHBOURS_MAX = 2000


async def _raw(stores: Stores, key: str, user: str) -> bytes | None:
    value = await stores.redis.for_user(user).get(key)
    return value if value is None or isinstance(value, bytes) else value.encode()


async def _lists(stores: Stores, keys: FeedKeys, users: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for user in users:
        raw = await _raw(stores, keys.adjacency(user), user)
        assert raw is not None, f"no connection list stored for {user}"
        out[user] = sorted(raw.decode().split(",")) if raw else []
    return out


async def test_sign_up_and_connections_warm_the_feature_store(services: Services) -> None:
    settings = make_settings(services, rate_signup_ip_count=100)
    async with running_restd(settings) as api:
        keys = FeedKeys(api.stores.keys)
        a, b, c = [await api.signup() for _ in range(3)]
        # A new account: its card and its (empty) list are there before any feed read.
        assert await _lists(api.stores, keys, [a.id, b.id, c.id]) == {a.id: [], b.id: [], c.id: []}
        card = await _raw(api.stores, keys.card(a.id), a.id)
        assert card is not None and orjson.loads(card)["_id"] == a.id

        await api.connect(a, b)
        await api.connect(c, b)
        # Re-read after each change rather than dropped: the lists are current.
        assert await _lists(api.stores, keys, [a.id, b.id, c.id]) == {
            a.id: [b.id],
            b.id: sorted([a.id, c.id]),
            c.id: [b.id],
        }
        # And the feed, ranked on them, sees c through b.
        page = (await a.http.get("/api/feed")).json()
        assert c.id in [item["profile"]["id"] for item in page["items"]]


async def test_backfill_stores_what_reading_through_would(services: Services) -> None:
    settings = make_settings(services, rate_signup_ip_count=100)
    async with running_restd(settings) as api:
        keys = FeedKeys(api.stores.keys)
        users = [await api.signup() for _ in range(5)]
        await api.connect(users[0], users[1])
        await api.connect(users[2], users[0])
        await api.connect(users[1], users[2])
        ids = [u.id for u in users]
        store = FeatureStore(api.stores.db, api.stores.redis, keys)

        async def forget_all() -> None:
            for user in ids:
                await store.forget_connections(user)
                await store.forget_card(user)

        await forget_all()
        read_through = await store.connections(ids, NEIGHBOURS_MAX)
        await forget_all()
        lines: list[str] = []
        counts = await store.backfill(NEIGHBOURS_MAX, lines.append)

        assert counts == {"people": 5, "connections": 3}
        assert len(lines) == 2
        stored = await _lists(api.stores, keys, ids)
        assert stored == {user: sorted(others) for user, others in read_through.items()}
        assert stored[ids[4]] == []  # nobody: an empty list, still a hit
        for user in ids:
            card = await _raw(api.stores, keys.card(user), user)
            assert card is not None and orjson.loads(card)["_id"] == user

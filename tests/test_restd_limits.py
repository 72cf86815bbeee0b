"""Rate limits and login lockout: real Redis, real HTTP, 429 with Retry-After."""

from __future__ import annotations

import asyncio

import httpx

from core.keys import Keys
from core.ratelimit import Lockout, LockoutPolicy, Rate, RateLimiter
from core.redis import RedisShards
from tests.harness import Services, make_settings, unique_name
from tests.restd_harness import running_restd

GENEROUS = {
    "rate_login_ip_count": 1000,
    "rate_login_email_count": 1000,
    "rate_signup_ip_count": 1000,
}


def retry_after(resp: httpx.Response) -> int:
    assert resp.status_code == 429, resp.text
    value = int(resp.headers["Retry-After"])
    assert value >= 1
    return value


async def test_login_lockout_grows_and_hides_whether_the_email_exists(services: Services) -> None:
    settings = make_settings(
        services,
        **GENEROUS,
        login_lockout_threshold=2,
        login_lockout_base_s=1,
        login_lockout_max_s=60,
    )
    async with running_restd(settings) as api:
        user = await api.signup()
        client = api.client()
        good = {"email": user.email, "password": user.password}
        bad = {"email": user.email, "password": "wrong password"}

        # A success clears earlier failures.
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        assert (await client.post("/api/auth/login", json=good)).status_code == 200
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        # The threshold-th failure locks: even the right password is refused.
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        locked = await client.post("/api/auth/login", json=good)
        first_lock = retry_after(locked)
        assert locked.json()["error"]["code"] == "login_locked"

        # An unknown email locks the same way, so a lockout reveals nothing either.
        ghost = {"email": "ghost@example.com", "password": "whatever"}
        assert (await client.post("/api/auth/login", json=ghost)).status_code == 401
        assert (await client.post("/api/auth/login", json=ghost)).status_code == 401
        ghost_locked = await client.post("/api/auth/login", json=ghost)
        retry_after(ghost_locked)
        assert ghost_locked.json()["error"] == locked.json()["error"]

        # After the lock runs out, one more failure locks for longer.
        await asyncio.sleep(first_lock + 0.1)
        assert (await client.post("/api/auth/login", json=bad)).status_code == 401
        second_lock = retry_after(await client.post("/api/auth/login", json=good))
        assert second_lock > first_lock

        metrics = await api.metrics()
        assert 'restd_login_failures_total{reason="locked"} 3.0' in metrics


async def test_login_is_rate_limited_per_ip(services: Services) -> None:
    settings = make_settings(
        services, **{**GENEROUS, "rate_login_ip_count": 3, "rate_login_ip_window_s": 60}
    )
    async with running_restd(settings) as api:
        client = api.client()
        for n in range(3):
            body = {"email": f"nobody{n}@example.com", "password": "x"}
            assert (await client.post("/api/auth/login", json=body)).status_code == 401
        limited = await client.post(
            "/api/auth/login", json={"email": "z@example.com", "password": "x"}
        )
        assert retry_after(limited) <= 60
        assert limited.json()["error"]["code"] == "rate_limited"


async def test_login_is_rate_limited_per_email(services: Services) -> None:
    settings = make_settings(
        services, **{**GENEROUS, "rate_login_email_count": 2, "rate_login_email_window_s": 60}
    )
    async with running_restd(settings) as api:
        client = api.client()
        target = {"email": "target@example.com", "password": "guess"}
        assert (await client.post("/api/auth/login", json=target)).status_code == 401
        assert (await client.post("/api/auth/login", json=target)).status_code == 401
        retry_after(await client.post("/api/auth/login", json=target))
        other = {"email": "other@example.com", "password": "guess"}
        assert (await client.post("/api/auth/login", json=other)).status_code == 401


async def test_signup_is_rate_limited_per_ip(services: Services) -> None:
    settings = make_settings(services, rate_signup_ip_count=2, rate_signup_ip_window_s=3600)
    async with running_restd(settings) as api:
        await api.signup()
        await api.signup()
        refused = await api.client().post(
            "/api/auth/signup",
            json={"name": "Three", "email": "three@example.com", "password": "long enough pw"},
        )
        assert retry_after(refused) <= 3600
        # Refused before any write: the account does not exist.
        login = await api.client().post(
            "/api/auth/login", json={"email": "three@example.com", "password": "long enough pw"}
        )
        assert login.status_code == 401


async def test_each_user_has_a_general_request_budget(services: Services) -> None:
    settings = make_settings(services, rate_user_count=5, rate_user_window_s=60)
    async with running_restd(settings) as api:
        alice = await api.signup()
        bob = await api.signup()
        for _ in range(5):
            assert (await alice.http.get("/api/users/me")).status_code == 200
        limited = await alice.http.get("/api/connections")
        assert retry_after(limited) <= 60
        assert (await bob.http.get("/api/users/me")).status_code == 200


async def test_gcra_limiter_allows_the_burst_then_refuses_on_the_subjects_shard(
    services: Services,
) -> None:
    redis = RedisShards(services.redis_urls)
    keys = Keys(f"{unique_name()}:")
    limiter = RateLimiter(redis, keys)
    try:
        rate = Rate(count=3, window_s=30)
        decisions = [await limiter.hit("test", "subject-a", rate) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
        assert 1 <= decisions[3].retry_after_s <= 10  # one emission interval: 30 s / 3
        assert (await limiter.hit("test", "subject-b", rate)).allowed  # subjects are apart

        key = keys.rate("test", "subject-a")
        owner = redis.index_for("subject-a")
        for index, client in enumerate(redis.clients):
            assert bool(await client.exists(key)) == (index == owner)

        await limiter.reset("test", "subject-a")
        assert (await limiter.hit("test", "subject-a", rate)).allowed
    finally:
        for client in redis.clients:
            found = [k async for k in client.scan_iter(match=f"{keys.prefix}*")]
            if found:
                await client.delete(*found)
        await redis.close()


async def test_lockout_doubles_from_the_threshold_up_to_the_cap(services: Services) -> None:
    redis = RedisShards(services.redis_urls)
    keys = Keys(f"{unique_name()}:")
    lockout = Lockout(redis, keys, LockoutPolicy(threshold=2, base_s=5, max_s=15, window_s=600))
    try:
        locks = [await lockout.record_failure("someone") for _ in range(5)]
        assert locks == [0, 5, 10, 15, 15]
        assert 1 <= await lockout.locked_for_s("someone") <= 15
        await lockout.clear("someone")
        assert await lockout.locked_for_s("someone") == 0
        assert await lockout.record_failure("someone") == 0
    finally:
        for client in redis.clients:
            found = [k async for k in client.scan_iter(match=f"{keys.prefix}*")]
            if found:
                await client.delete(*found)
        await redis.close()

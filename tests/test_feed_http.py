"""The feed over real HTTP: exclusions, explain, paging, invalidation, cold start, variants."""

from __future__ import annotations

import math
from typing import Any

import httpx

from domain.feed.variants import Variants
from domain.feed.weights import default_weights
from tests.harness import Services, make_settings
from tests.restd_harness import User, running_restd

# Plenty of sign-ups from one test client's address.
ROOMY = {"rate_signup_ip_count": 500, "connection_requests_per_day_free": 500}


async def feed(user: User, **params: Any) -> dict[str, Any]:
    resp = await user.http.get("/api/feed", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [item["profile"]["id"] for item in page["items"]]


async def profile(user: User, **fields: Any) -> None:
    resp = await user.http.patch("/api/users/me", json=fields)
    assert resp.status_code == 200, resp.text


async def request(a: User, b: User) -> str:
    resp = await a.http.post("/api/connection-requests", json={"toUserId": b.id})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_every_exclusion_rule_keeps_people_out_of_the_feed(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        me, friend = await api.signup("Me"), await api.signup("Friend")
        names = ["ok", "asked", "asker", "blocked", "blocker", "rejected", "hidden"]
        people = {name: await api.signup(name) for name in names}
        await api.connect(me, friend)
        for other in people.values():  # all of them friends of my friend
            await api.connect(friend, other)
        await request(me, people["asked"])  # pending, sent by me
        await request(people["asker"], me)  # pending, sent to me
        assert (await me.http.post(f"/api/users/{people['blocked'].id}/block")).status_code == 204
        assert (await people["blocker"].http.post(f"/api/users/{me.id}/block")).status_code == 204
        rejected = await request(people["rejected"], me)
        answer = await me.http.patch(
            f"/api/connection-requests/{rejected}", json={"status": "rejected"}
        )
        assert answer.status_code == 200, answer.text
        await profile(people["hidden"], prefs={"discoverable": False})

        seen = ids(await feed(me, limit=50))
        assert people["ok"].id in seen
        assert me.id not in seen, "self"
        assert friend.id not in seen, "an existing connection"
        for name in ("asked", "asker", "blocked", "blocker", "rejected", "hidden"):
            assert people[name].id not in seen, name
        # The one who blocked me does not see me either; the others still can.
        assert me.id not in ids(await feed(people["blocker"], limit=50))
        assert me.id in ids(await feed(people["ok"], limit=50))


async def test_explain_contributions_sum_to_the_score_with_human_reasons(
    services: Services,
) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        me, friend, other = await api.signup("Me"), await api.signup("F"), await api.signup("O")
        await profile(me, skills=["Rust", "Go", "SQL"], location="Berlin, Germany")
        await profile(other, skills=["rust", "golang"], location="Berlin, Germany")
        await api.connect(me, friend)
        await api.connect(friend, other)
        page = await feed(me)
        assert page["items"]
        for item in page["items"]:
            parts = item["explain"]["contributions"]
            assert math.isclose(sum(parts.values()), item["score"], abs_tol=1e-9), item
        first = page["items"][0]
        assert first["profile"]["id"] == other.id
        reasons = first["explain"]["reasons"]
        assert "1 mutual connection" in reasons
        assert "both know go, rust" in reasons
        assert "both in Berlin" in reasons
        assert first["explain"]["contributions"]["mutual"] > 0


async def test_pages_of_one_snapshot_never_repeat_or_skip(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        me, hub = await api.signup("Me"), await api.signup("Hub")
        await api.connect(me, hub)
        others = [await api.signup(f"P{i}") for i in range(23)]
        for other in others:
            await api.connect(hub, other)
        whole = ids(await feed(me, limit=50))  # ranks and caches one snapshot
        assert len(whole) == len(set(whole)) >= len(others)

        paged: list[str] = []
        page = await feed(me, limit=4)
        paged += ids(page)
        # A change in the middle starts a new snapshot for the next first page,
        # but a cursor keeps paging the snapshot it came from.
        await api.connect(me, others[0])
        while page["nextCursor"]:
            page = await feed(me, limit=4, cursor=page["nextCursor"])
            paged += ids(page)
        assert paged == whole
        assert others[0].id not in ids(await feed(me, limit=50))


async def test_a_new_connection_invalidates_the_cached_feed(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        me, friend, other = await api.signup(), await api.signup(), await api.signup()
        await api.connect(me, friend)
        await api.connect(friend, other)
        before = await feed(me)
        assert other.id in ids(before)
        assert ids(await feed(me)) == ids(before)  # served from the cache
        await api.connect(other, me)
        after = ids(await feed(me))
        assert other.id not in after
        # The other side's feed was invalidated too.
        assert me.id not in ids(await feed(other))


async def test_a_new_user_with_no_connections_gets_a_feed(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        veterans = [await api.signup(f"V{i}") for i in range(3)]
        await api.connect(veterans[0], veterans[1])
        newbie = await api.signup("Newbie")
        page = await feed(newbie)
        seen = ids(page)
        assert newbie.id not in seen
        assert {v.id for v in veterans} <= set(seen)
        assert all("new on DevConnect" in i["explain"]["reasons"] for i in page["items"])


async def test_variant_is_stable_per_user_and_counted(services: Services) -> None:
    variants = {"control": {}, "skills_heavy": {"skills": 3.0}}
    settings = make_settings(services, feed_variants=variants, **ROOMY)
    expected = Variants(default_weights(), variants, settings.feed_variant_salt)
    async with running_restd(settings) as api:
        users = [await api.signup() for _ in range(8)]
        await api.connect(users[0], users[1])
        for user in users:
            first, second = await feed(user), await feed(user)
            assert first["variant"] == second["variant"] == expected.assign(user.id)
        assert len({expected.assign(f"{i:024x}") for i in range(50)}) == 2

        me, target = users[2], users[3]
        variant = expected.assign(me.id)
        for kind in ("profile_view", "request_sent"):
            resp = await me.http.post("/api/feed/events", json={"type": kind, "userId": target.id})
            assert resp.status_code == 204, resp.text
        sent = await request(me, target)
        answer = await target.http.patch(
            f"/api/connection-requests/{sent}", json={"status": "accepted"}
        )
        assert answer.status_code == 200
        metrics = await api.metrics()
        for name in ("profile_views", "requests", "accepts"):
            assert f'feed_{name}_total{{variant="{variant}"}} 1.0' in metrics, name
        assert f'feed_impressions_total{{variant="{variant}"}}' in metrics


async def test_bad_feed_input_gets_the_error_shape(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        me = await api.signup()

        async def code(resp: httpx.Response, status: int) -> str:
            assert resp.status_code == status, resp.text
            return str(resp.json()["error"]["code"])

        assert await code(await me.http.get("/api/feed", params={"limit": 0}), 422) == (
            "validation_failed"
        )
        assert await code(await me.http.get("/api/feed", params={"cursor": "x"}), 422) == (
            "validation_failed"
        )
        gone = await me.http.get("/api/feed", params={"cursor": "0123456789abcdef.20"})
        assert await code(gone, 409) == "cursor_expired"
        bad = await me.http.post("/api/feed/events", json={"type": "like", "userId": me.id})
        assert await code(bad, 422) == "validation_failed"
        itself = await me.http.post(
            "/api/feed/events", json={"type": "profile_view", "userId": me.id}
        )
        assert await code(itself, 409) == "self_event"
        assert await code(await api.client().get("/api/feed"), 401) == "invalid_token"

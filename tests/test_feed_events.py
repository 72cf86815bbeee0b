"""The feed's training data (domain/feed/events.py) over real HTTP and a real store:
what was shown, at which rank, with which features, and what came of each request."""

from __future__ import annotations

import asyncio
from typing import Any

from core.mongo import FEED_EVENTS, INDEXES
from domain.feed.features import FEATURES
from tests.harness import Services, make_settings
from tests.restd_harness import Api, User, running_restd

ROOMY = {"rate_signup_ip_count": 500, "connection_requests_per_day_free": 500}


async def _events(api: Api, **query: Any) -> list[dict[str, Any]]:
    cursor = api.stores.db[FEED_EVENTS].find(query).sort("_id", 1)
    return [doc async for doc in cursor]


async def _impressions(api: Api, user: User, count: int) -> list[dict[str, Any]]:
    """Impressions are written off the page's path: wait (bounded) until they are in."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = await _events(api, kind="impression", userId=user.id)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def _request(a: User, b: User) -> str:
    resp = await a.http.post("/api/connection-requests", json={"toUserId": b.id})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _answer(user: User, request_id: str, status: str) -> None:
    resp = await user.http.patch(f"/api/connection-requests/{request_id}", json={"status": status})
    assert resp.status_code == 200, resp.text


async def test_impressions_and_every_outcome_are_recorded(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        me, friend = await api.signup("Me"), await api.signup("Friend")
        others = [await api.signup(f"o{i}") for i in range(5)]
        await api.connect(me, friend)
        for other in others:
            await api.connect(friend, other)

        # Two pages: ranks run on across them, each with the features it was ranked on.
        first = await me.http.get("/api/feed", params={"limit": 3})
        assert first.status_code == 200, first.text
        body = first.json()
        second = await me.http.get("/api/feed", params={"cursor": body["nextCursor"]})
        assert second.status_code == 200, second.text
        shown = [i["profile"]["id"] for i in body["items"] + second.json()["items"]]
        impressions = await _impressions(api, me, len(shown))
        assert [e["candidateId"] for e in impressions] == shown
        assert [e["rank"] for e in impressions] == list(range(len(shown)))
        assert {e["variant"] for e in impressions} == {body["variant"]}
        for event, item in zip(impressions, body["items"], strict=False):
            assert len(event["features"]) == len(FEATURES)
            assert all(0.0 <= v <= 1.0 for v in event["features"])
            assert event["features"] == [item["explain"]["values"][f] for f in FEATURES]
            assert event["features"][FEATURES.index("mutual")] > 0  # one mutual: the friend
            assert event["modelVersion"] is None  # ranked with weights, no model yet

        # Request, accept; request, reject; request, withdraw.
        a, b, c = others[0], others[1], others[2]
        await _answer(a, await _request(me, a), "accepted")
        await _answer(b, await _request(me, b), "rejected")
        withdrawn = await _request(me, c)
        resp = await me.http.delete(f"/api/connection-requests/{withdrawn}")
        assert resp.status_code in (200, 204), resp.text
        outcomes = [
            (e["kind"], e["candidateId"])
            for e in await _events(api, userId=me.id)
            if e["kind"] != "impression" and e["candidateId"] != friend.id  # set-up's own
        ]
        assert outcomes == [
            ("request", a.id),
            ("accept", a.id),
            ("request", b.id),
            ("reject", b.id),
            ("request", c.id),
            ("withdraw", c.id),
        ]


async def test_two_crossing_requests_record_the_earlier_one_accepted(services: Services) -> None:
    async with running_restd(make_settings(services, **ROOMY)) as api:
        ann, bob = await api.signup("Ann"), await api.signup("Bob")
        await _request(ann, bob)
        await _request(bob, ann)  # accepts Ann's
        kinds = [(e["kind"], e["userId"], e["candidateId"]) for e in await _events(api)]
        assert kinds == [
            ("request", ann.id, bob.id),
            ("request", bob.id, ann.id),
            ("accept", ann.id, bob.id),
        ]


def test_events_expire_and_are_indexed_by_user() -> None:
    keys = {tuple(m.document["key"].items()): m.document for m in INDEXES[FEED_EVENTS]}
    assert keys[(("at", 1),)]["expireAfterSeconds"] > 0
    assert (("userId", 1),) in keys

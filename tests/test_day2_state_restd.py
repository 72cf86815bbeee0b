"""restd state over real HTTP: bounded prefs, prefs writes that never lose a racing
update (PATCH /api/me against one-click unsubscribes), and the refresh reuse grace
(two tabs refreshing with one cookie at once) with reuse detection after it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from bson import ObjectId

from core.emailprefs import PREF_KEYS, EmailKind, UnsubscribeTokens
from core.mongo import USERS
from domain.accounts import GRACE_REISSUES_MAX
from domain.models import MAX_PREF_INT, MAX_PREF_KEY_CHARS, MAX_PREF_TEXT_CHARS, MAX_PREFS
from tests.harness import Services, make_settings
from tests.restd_harness import PASSWORD, Api, User, running_restd

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def refused_fields(resp: httpx.Response) -> list[str]:
    """The fields a 422 in the shared error shape names."""
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "validation_failed"
    return [detail["field"] for detail in body["error"]["details"]]


async def stored_prefs(api: Api, user: User) -> dict[str, Any]:
    doc = await api.stores.db[USERS].find_one({"_id": ObjectId(user.id)})
    assert doc is not None
    return dict(doc.get("prefs") or {})


# -- 1. prefs are bounded -------------------------------------------------------------


async def test_prefs_keys_values_and_the_merged_map_are_capped(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        patch = user.http.patch

        # Each key and value, named as the field a client addresses: prefs.<key>.
        bad_bodies = {
            "prefs.bad-key": {"bad-key": True},
            "prefs.$set": {"$set": 1},
            "prefs.a.b": {"a.b": 1},
            "prefs.9lives": {"9lives": 1},
            f"prefs.{'k' * (MAX_PREF_KEY_CHARS + 1)}": {"k" * (MAX_PREF_KEY_CHARS + 1): 1},
            "prefs.theme": {"theme": "x" * (MAX_PREF_TEXT_CHARS + 1)},
            "prefs.ratio": {"ratio": 0.5},
            "prefs.huge": {"huge": MAX_PREF_INT + 1},
            "prefs.nested": {"nested": {"a": 1}},
            "prefs.list": {"list": [1, 2]},
        }
        for field, prefs in bad_bodies.items():
            fields = refused_fields(await patch("/api/me", json={"prefs": prefs}))
            assert fields == [field], (field, fields)
        # At the limits, everything is accepted, and types read back as sent.
        edge = {
            "k" * MAX_PREF_KEY_CHARS: "x" * MAX_PREF_TEXT_CHARS,
            "maxInt": MAX_PREF_INT,
            "minInt": -MAX_PREF_INT,
            "darkMode": True,
            "compact": False,
            "theme_v2": "",
        }
        ok = await patch("/api/me", json={"prefs": edge})
        assert ok.status_code == 200, ok.text
        assert ok.json()["prefs"] == edge
        assert (await stored_prefs(api, user))["compact"] is False

        # Too many keys in one request.
        many = {f"p{i}": i for i in range(MAX_PREFS + 1)}
        assert refused_fields(await patch("/api/me", json={"prefs": many})) == ["prefs"]

        # The cap holds for the merged map: 6 stored + 45 new = 51 is refused, and the
        # refused request changes nothing, its other fields included.
        more = {f"p{i}": i for i in range(MAX_PREFS - len(edge) + 1)}
        refused = await patch("/api/me", json={"prefs": more, "headline": "not written"})
        assert refused_fields(refused) == ["prefs"]
        me = (await user.http.get("/api/me")).json()
        assert me["prefs"] == edge and me["headline"] == ""
        # Exactly at the cap is fine, and so is changing values at the cap.
        more.pop(f"p{MAX_PREFS - len(edge)}")
        full = await patch("/api/me", json={"prefs": more, "headline": "written"})
        assert full.status_code == 200, full.text
        assert len(full.json()["prefs"]) == MAX_PREFS and full.json()["headline"] == "written"
        assert (await patch("/api/me", json={"prefs": {"p0": "changed"}})).status_code == 200
        # A new key needs room: one removed in the same request makes it.
        assert refused_fields(await patch("/api/me", json={"prefs": {"extra": 1}})) == ["prefs"]
        swap = await patch("/api/me", json={"prefs": {"p1": None, "extra": 1}})
        assert swap.status_code == 200, swap.text
        prefs = swap.json()["prefs"]
        assert len(prefs) == MAX_PREFS and "p1" not in prefs and prefs["extra"] == 1
        assert prefs["p0"] == "changed" and prefs["darkMode"] is True
        assert await stored_prefs(api, user) == prefs

        # The same rules on the other route to the same edit.
        fields = refused_fields(await patch("/api/users/me", json={"prefs": {"x-y": 1}}))
        assert fields == ["prefs.x-y"]


# -- 2. no lost prefs updates -----------------------------------------------------------


async def test_concurrent_patches_and_unsubscribes_all_land(services: Services) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api:
        user = await api.signup()
        # Two tabs, a settings page and the mail provider all at once: 36 PATCHes of
        # distinct keys (half of them booleans, which must stay booleans) and a
        # one-click unsubscribe of every email kind, each on its own connection.
        wanted: dict[str, Any] = {}
        for i in range(36):
            wanted[f"k{i}"] = (i % 3 == 0) if i % 2 else i
        tokens = UnsubscribeTokens(settings.jwt_secret, settings.unsubscribe_token_max_age_s)
        tabs = [api.client(Authorization=f"Bearer {user.token}") for _ in range(6)]

        async def patch(i: int, key: str, value: Any) -> httpx.Response:
            return await tabs[i % len(tabs)].patch("/api/me", json={"prefs": {key: value}})

        async def unsubscribe(kind: EmailKind) -> httpx.Response:
            token = tokens.issue(user.id, kind)
            mail_provider = api.client(origin="https://mail.example")
            return await mail_provider.post(f"/api/email/unsubscribe?token={token}", data=ONE_CLICK)

        calls = [patch(i, key, value) for i, (key, value) in enumerate(wanted.items())]
        calls += [unsubscribe(kind) for kind in PREF_KEYS]
        responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * len(calls), [
            r.text for r in responses if r.status_code != 200
        ]

        expected = {**wanted, **{pref: False for pref in PREF_KEYS.values()}}
        me = (await user.http.get("/api/me")).json()
        assert me["prefs"] == expected
        stored = await stored_prefs(api, user)
        assert stored == expected
        # Booleans are booleans in the store too (not the 0/1 a dotted $set leaves).
        assert all(type(stored[k]) is type(v) for k, v in expected.items())
        doc = await api.stores.db[USERS].find_one({"_id": ObjectId(user.id)})
        assert doc is not None and doc["prefsVersion"] == len(calls)

        # A later PATCH turning one kind back on keeps everything else.
        back = await user.http.patch("/api/me", json={"prefs": {"emailMessages": True}})
        assert back.json()["prefs"] == {**expected, "emailMessages": True}


async def test_prefs_of_a_user_written_before_the_version_field_are_merged(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        # As an older restd left users: prefs, no prefsVersion.
        await api.stores.db[USERS].update_one(
            {"_id": ObjectId(user.id)},
            {"$set": {"prefs": {"emailPayments": False}}, "$unset": {"prefsVersion": ""}},
        )
        both = await asyncio.gather(
            user.http.patch("/api/me", json={"prefs": {"a": 1}}),
            api.client(Authorization=f"Bearer {user.token}").patch(
                "/api/me", json={"prefs": {"b": 2}}
            ),
        )
        assert [r.status_code for r in both] == [200, 200]
        assert await stored_prefs(api, user) == {"emailPayments": False, "a": 1, "b": 2}


# -- 3. the refresh reuse grace -------------------------------------------------------


async def login(api: Api, user: User) -> tuple[httpx.AsyncClient, str]:
    browser = api.browser()
    resp = await browser.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    token = browser.cookies.get("refresh_token", path="/api/auth")
    assert token
    return browser, token


def tab(api: Api, refresh_token: str) -> httpx.AsyncClient:
    """A browser tab that holds this refresh cookie."""
    return api.client(origin=api.origin, Cookie=f"refresh_token={refresh_token}")


async def refreshed(api: Api, client: httpx.AsyncClient) -> tuple[str, str]:
    """Refresh; returns (new refresh token, new access token), checking the session works."""
    resp = await client.post("/api/auth/refresh")
    assert resp.status_code == 200, resp.text
    cookie = resp.cookies.get("refresh_token")
    assert cookie
    access = resp.json()["accessToken"]
    me = await api.client(Authorization=f"Bearer {access}").get("/api/auth/me")
    assert me.status_code == 200, me.text
    return cookie, access


async def reuse_count(api: Api) -> str:
    metrics = await api.metrics()
    lines = metrics.splitlines()
    return next(line for line in lines if line.startswith("restd_refresh_reuse_total"))


async def test_two_tabs_refreshing_with_one_cookie_at_once_both_succeed(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        _browser, first = await login(api, user)

        # Two tabs wake up together and send the same cookie in the same instant.
        tab_a, tab_b = tab(api, first), tab(api, first)
        a, b = await asyncio.gather(
            tab_a.post("/api/auth/refresh"), tab_b.post("/api/auth/refresh")
        )
        assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
        token_a, token_b = a.cookies.get("refresh_token"), b.cookies.get("refresh_token")
        assert token_a and token_b and len({first, token_a, token_b}) == 3
        for resp in (a, b):
            me = api.client(Authorization=f"Bearer {resp.json()['accessToken']}")
            assert (await me.get("/api/auth/me")).json()["id"] == user.id

        # The session keeps working from either tab's new cookie, rotation after rotation.
        next_a, _ = await refreshed(api, tab(api, token_a))
        next_b, _ = await refreshed(api, tab(api, token_b))
        await refreshed(api, tab(api, next_a))
        await refreshed(api, tab(api, next_b))
        assert await reuse_count(api) == "restd_refresh_reuse_total 0.0"

        # Many tabs at once, within the bound on reissues per token.
        _browser, shared = await login(api, user)
        burst = await asyncio.gather(
            *(tab(api, shared).post("/api/auth/refresh") for _ in range(GRACE_REISSUES_MAX + 1))
        )
        assert [r.status_code for r in burst] == [200] * (GRACE_REISSUES_MAX + 1)
        assert await reuse_count(api) == "restd_refresh_reuse_total 0.0"
        # One more within the grace is past the bound: a replay, the family is revoked.
        late = await tab(api, shared).post("/api/auth/refresh")
        assert late.status_code == 401 and late.json()["error"]["code"] == "invalid_refresh"
        survivor = burst[0].cookies.get("refresh_token")
        assert survivor
        revoked = await tab(api, survivor).post("/api/auth/refresh")
        assert revoked.status_code == 401
        assert await reuse_count(api) == "restd_refresh_reuse_total 1.0"


async def test_reuse_after_the_grace_still_revokes_the_family(services: Services) -> None:
    grace_s = 1
    async with running_restd(make_settings(services, refresh_reuse_grace_s=grace_s)) as api:
        user = await api.signup()
        browser, first = await login(api, user)
        other_device, _ = await login(api, user)  # another family: unaffected

        rotated = await browser.post("/api/auth/refresh")
        assert rotated.status_code == 200, rotated.text
        latest = browser.cookies.get("refresh_token", path="/api/auth")
        assert latest and latest != first
        # Within the grace, the rotated token is honoured once more, in the same family.
        in_grace, _ = await refreshed(api, tab(api, first))

        await asyncio.sleep(grace_s + 0.5)
        replay = await tab(api, first).post("/api/auth/refresh")
        assert replay.status_code == 401, replay.text
        assert replay.json()["error"]["code"] == "invalid_refresh"
        # The whole family is revoked: the browser's latest token, and the one the grace gave.
        for token in (latest, in_grace):
            resp = await tab(api, token).post("/api/auth/refresh")
            assert resp.status_code == 401, resp.text
        assert await reuse_count(api) == "restd_refresh_reuse_total 1.0"
        assert (await other_device.post("/api/auth/refresh")).status_code == 200

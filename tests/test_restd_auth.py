"""restd auth over real HTTP: signup/login cookies, refresh rotation and reuse,
logout, logout-all, CSRF and CORS, one error shape, no account enumeration."""

from __future__ import annotations

import httpx

from tests.harness import Services, make_settings
from tests.restd_harness import PASSWORD, running_restd

FOREIGN = "https://evil.example"


def set_cookies(resp: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name."""
    return {h.split("=", 1)[0]: h for h in resp.headers.get_list("set-cookie")}


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert "Traceback" not in resp.text
    return body["error"]  # type: ignore[no-any-return]


async def test_signup_and_login_set_httponly_cookies_and_return_user_and_token(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        browser = api.browser()
        resp = await browser.post(
            "/api/auth/signup",
            json={"name": " Ada ", "email": "  Ada@Example.COM ", "password": PASSWORD},
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert set(body) == {"user", "accessToken"}
        assert body["user"]["email"] == "ada@example.com"
        assert body["user"]["name"] == "Ada"
        assert "passwordHash" not in body["user"]
        cookies = set_cookies(resp)
        access, refresh = cookies["access_token"], cookies["refresh_token"]
        for header in (access, refresh):
            assert "HttpOnly" in header
            assert "SameSite=Lax" in header
            assert "Secure" not in header  # cookie_secure is off for local http in tests
        assert "Path=/;" in access or access.endswith("Path=/")
        assert "Path=/api/auth" in refresh

        # The cookie alone authenticates, on every alias of "me".
        for path in ("/api/auth/me", "/api/me", "/api/users/me"):
            me = await browser.get(path)
            assert me.status_code == 200, (path, me.text)
            assert me.json()["id"] == body["user"]["id"]
            assert me.json()["email"] == "ada@example.com"

        # So does the bearer token, with no cookie at all.
        bare = api.client(Authorization=f"Bearer {body['accessToken']}")
        assert (await bare.get("/api/auth/me")).json()["id"] == body["user"]["id"]

        taken = await api.client().post(
            "/api/auth/signup",
            json={"name": "Other", "email": "ADA@example.com", "password": PASSWORD},
        )
        assert_error(taken, 409, "email_taken")

        login = await api.browser().post(
            "/api/auth/login", json={"email": " ADA@EXAMPLE.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["id"] == body["user"]["id"]
        assert {"access_token", "refresh_token"} <= set(set_cookies(login))


async def test_cookies_are_secure_unless_disabled(services: Services) -> None:
    async with running_restd(make_settings(services, cookie_secure=True)) as api:
        resp = await api.client().post(
            "/api/auth/signup",
            json={"name": "Sec", "email": "sec@example.com", "password": PASSWORD},
        )
        assert resp.status_code == 201
        for header in set_cookies(resp).values():
            assert "Secure" in header


async def test_login_failure_never_tells_whether_the_email_exists(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        client = api.client()
        wrong = await client.post(
            "/api/auth/login", json={"email": user.email, "password": "not the password"}
        )
        unknown = await client.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": "whatever"}
        )
        assert_error(wrong, 401, "invalid_credentials")
        assert_error(unknown, 401, "invalid_credentials")
        assert wrong.json() == unknown.json()
        assert "set-cookie" not in wrong.headers

        metrics = await api.metrics()
        assert 'restd_login_failures_total{reason="credentials"} 2.0' in metrics
        assert "restd_signups_total 1.0" in metrics
        assert (
            'restd_requests_total{method="POST",route="/api/auth/login",status="401"} 2.0'
            in metrics
        )
        assert 'restd_request_duration_seconds_count{route="/api/auth/login"} 2.0' in metrics


async def test_bad_input_gets_one_error_shape_and_never_a_500(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        client = api.client()
        invalid = await client.post(
            "/api/auth/signup", json={"name": "", "email": "not-an-email", "password": "Zq9!x"}
        )
        error = assert_error(invalid, 422, "validation_failed")
        fields = {d["field"] for d in error["details"]}  # type: ignore[union-attr]
        assert fields == {"name", "email", "password"}
        assert "Zq9!x" not in invalid.text  # input values (passwords) are never echoed

        unknown_field = await client.post(
            "/api/auth/login", json={"email": "a@b.co", "password": "x", "admin": True}
        )
        assert_error(unknown_field, 422, "validation_failed")
        not_json = await client.post(
            "/api/auth/login", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_error(not_json, 400, "invalid_json")
        not_object = await client.post("/api/auth/login", json=[1, 2])
        assert_error(not_object, 422, "validation_failed")
        assert_error(await client.get("/api/no-such-thing"), 404, "not_found")
        assert_error(await client.put("/api/auth/login", json={}), 405, "method_not_allowed")


async def test_requests_without_valid_credentials_get_401(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        browser = api.browser()
        signup = await browser.post(
            "/api/auth/signup",
            json={"name": "Bo", "email": "bo@example.com", "password": PASSWORD},
        )
        assert signup.status_code == 201
        assert_error(await api.client().get("/api/users/me"), 401, "invalid_token")
        garbage = api.client(Authorization="Bearer not.a.jwt")
        assert_error(await garbage.get("/api/users/me"), 401, "invalid_token")
        # A bearer header is authoritative: a bad one does not fall back to the cookie.
        mixed = await browser.get("/api/users/me", headers={"Authorization": "Bearer bad"})
        assert_error(mixed, 401, "invalid_token")
        assert (await browser.get("/api/users/me")).status_code == 200


async def test_refresh_rotates_and_reuse_of_an_old_token_revokes_the_family(
    services: Services,
) -> None:
    # No reuse grace here, so the replay below is a reuse however soon it comes; the
    # grace and a reuse after it are tested in test_day2_state_restd.py.
    async with running_restd(make_settings(services, refresh_reuse_grace_s=0)) as api:
        user = await api.signup()
        browser = api.browser()
        login = await browser.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
        assert login.status_code == 200
        first = browser.cookies.get("refresh_token", path="/api/auth")
        assert first

        rotated = await browser.post("/api/auth/refresh")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["user"]["id"] == user.id
        second = browser.cookies.get("refresh_token", path="/api/auth")
        assert second and second != first
        fresh = api.client(Authorization=f"Bearer {rotated.json()['accessToken']}")
        assert (await fresh.get("/api/auth/me")).status_code == 200

        # Another device, another family: unaffected by what follows.
        other_device = api.browser()
        assert (
            await other_device.post(
                "/api/auth/login", json={"email": user.email, "password": user.password}
            )
        ).status_code == 200

        # Someone replays the first (already rotated) token.
        thief = api.client(origin=api.origin, Cookie=f"refresh_token={first}")
        assert_error(await thief.post("/api/auth/refresh"), 401, "invalid_refresh")
        # The whole family is revoked: the legitimate latest token no longer works either.
        assert_error(await browser.post("/api/auth/refresh"), 401, "invalid_refresh")
        assert (await other_device.post("/api/auth/refresh")).status_code == 200
        metrics = await api.metrics()
        assert "restd_refresh_reuse_total 1.0" in metrics


async def test_logout_revokes_the_refresh_token_and_clears_cookies(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        browser = api.browser()
        await browser.post("/api/auth/login", json={"email": user.email, "password": user.password})
        token = browser.cookies.get("refresh_token", path="/api/auth")
        out = await browser.post("/api/auth/logout")
        assert out.status_code == 204, out.text
        cleared = set_cookies(out)
        assert {"access_token", "refresh_token"} <= set(cleared)
        assert all('=""' in h or "=;" in h for h in cleared.values()), cleared
        replay = api.client(origin=api.origin, Cookie=f"refresh_token={token}")
        assert_error(await replay.post("/api/auth/refresh"), 401, "invalid_refresh")


async def test_logout_all_revokes_every_session_and_closes_chat_sockets(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        browser = api.browser()
        await browser.post("/api/auth/login", json={"email": user.email, "password": user.password})
        cookie_token = browser.cookies.get("access_token")
        assert (await browser.get("/api/auth/me")).status_code == 200

        async with api.events(user.id) as tap:
            out = await user.http.post("/api/auth/logout-all")
            assert out.status_code == 204, out.text
            events = await tap.published()
        assert [(e["kind"], e["userId"]) for e in events] == [("logout-all", user.id)]

        assert_error(await user.http.get("/api/auth/me"), 401, "invalid_token")
        stale = api.client(Cookie=f"access_token={cookie_token}")
        assert_error(await stale.get("/api/auth/me"), 401, "invalid_token")
        assert_error(await browser.post("/api/auth/refresh"), 401, "invalid_refresh")

        again = await api.client().post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
        assert again.status_code == 200
        fresh = api.client(Authorization=f"Bearer {again.json()['accessToken']}")
        assert (await fresh.get("/api/auth/me")).status_code == 200


async def test_csrf_refuses_cookie_requests_from_foreign_origins(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        browser = api.browser()
        signup = await browser.post(
            "/api/auth/signup",
            json={"name": "Cy", "email": "cy@example.com", "password": PASSWORD},
        )
        assert signup.status_code == 201
        token = signup.json()["accessToken"]

        foreign = await browser.patch(
            "/api/users/me", json={"headline": "pwned"}, headers={"Origin": FOREIGN}
        )
        assert_error(foreign, 403, "csrf")
        assert "access-control-allow-origin" not in foreign.headers
        # No Origin and no Referer on a cookie request: refused as well.
        jar_only = api.client()
        jar_only.cookies = browser.cookies
        assert_error(await jar_only.patch("/api/users/me", json={"headline": "x"}), 403, "csrf")
        # A forged refresh or logout is refused too.
        refresh = await browser.post("/api/auth/refresh", headers={"Origin": FOREIGN})
        assert_error(refresh, 403, "csrf")
        assert (await browser.get("/api/users/me")).json()["headline"] == ""
        # Login CSRF (signing the victim into the attacker's account) is refused too.
        forged_login = await api.client(origin=FOREIGN).post(
            "/api/auth/login", json={"email": "cy@example.com", "password": PASSWORD}
        )
        assert_error(forged_login, 403, "csrf")

        # The web app's own origin, by Origin or by Referer, passes.
        ok = await browser.patch("/api/users/me", json={"headline": "hello"})
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == api.origin
        assert ok.headers["access-control-allow-credentials"] == "true"
        by_referer = await jar_only.patch(
            "/api/users/me", json={"headline": "again"}, headers={"Referer": api.origin + "/app"}
        )
        assert by_referer.status_code == 200, by_referer.text

        # Bearer requests are exempt: a page cannot make a browser send that header.
        bearer = api.client(origin=FOREIGN, Authorization=f"Bearer {token}")
        assert (await bearer.patch("/api/users/me", json={"headline": "api"})).status_code == 200

        # CORS: only the allowed origins, with credentials.
        preflight = await api.client(origin=api.origin).request(
            "OPTIONS", "/api/users/me", headers={"Access-Control-Request-Method": "PATCH"}
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == api.origin
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        refused = await api.client(origin=FOREIGN).request("OPTIONS", "/api/users/me")
        assert "access-control-allow-origin" not in refused.headers

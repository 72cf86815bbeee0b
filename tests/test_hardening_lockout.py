"""Issue 14, defect 3: failed logins cannot be used to lock someone out.

restd runs behind a trusted proxy here (127.0.0.1), so each client below comes
from the address its X-Forwarded-For names: the victim from one, attackers from
others. A device that signed in before carries a device cookie (OWASP's
pattern); strangers' failures lock out strangers, never that device.
"""

from __future__ import annotations

import httpx
import jwt

from tests.harness import Services, make_settings
from tests.restd_harness import Api, running_restd

VICTIM_IP = "198.51.100.10"
ATTACKER_IP = "203.0.113.66"


def from_ip(api: Api, ip: str) -> httpx.AsyncClient:
    return api.client(**{"X-Forwarded-For": ip})


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def lockout_settings() -> dict[str, object]:
    return {
        "trusted_proxies": ["127.0.0.1/32"],
        "login_lockout_threshold": 3,
        "login_lockout_base_s": 300,
        "login_lockout_max_s": 3600,
        "rate_login_ip_count": 1000,
        "rate_login_email_ip_count": 5,
        "rate_login_email_count": 1000,
        "rate_login_device_count": 5,
    }


async def test_an_attacker_failing_on_the_victims_email_does_not_lock_the_victim_out(
    services: Services,
) -> None:
    settings = make_settings(services, **lockout_settings())
    async with running_restd(settings) as api:
        victim = await api.signup()
        device = from_ip(api, VICTIM_IP)
        first = await login(device, victim.email, victim.password)
        assert first.status_code == 200, first.text
        cookie = next(
            h for h in first.headers.get_list("set-cookie") if h.startswith("device_token=")
        )
        assert "HttpOnly" in cookie and "Path=/api/auth/login" in cookie
        claims = jwt.decode(
            cookie.split("=", 1)[1].split(";")[0], options={"verify_signature": False}
        )
        assert claims["sub"] == victim.id  # names the user, signed by the server

        # The attacker fails again and again from elsewhere: it is throttled...
        attacker = from_ip(api, ATTACKER_IP)
        statuses = [(await login(attacker, victim.email, "guess")).status_code for _ in range(12)]
        assert statuses[:3] == [401, 401, 401]
        assert set(statuses[3:]) == {429}, statuses
        # ...and so is one rotating its address (the email's lock holds for strangers).
        rotating = [
            (await login(from_ip(api, f"192.0.2.{n}"), victim.email, "guess")).status_code
            for n in range(1, 6)
        ]
        assert set(rotating) == {429}, rotating
        # A new browser of the victim is a stranger too until it signs in once.
        new_browser = await login(from_ip(api, VICTIM_IP), victim.email, victim.password)
        assert new_browser.status_code == 429
        assert new_browser.json()["error"]["code"] == "login_locked"

        # The device that signed in before still gets in with the right password.
        again = await login(device, victim.email, victim.password)
        assert again.status_code == 200, again.text
        assert again.json()["user"]["id"] == victim.id
        # Even from an address of the attacker's choosing: the cookie, not the address.
        device.headers["X-Forwarded-For"] = ATTACKER_IP
        assert (await login(device, victim.email, victim.password)).status_code == 200

        # The attacker is still refused, with the right password too (it has no cookie).
        stolen = await login(attacker, victim.email, victim.password)
        assert stolen.status_code == 429
        assert int(stolen.headers["Retry-After"]) >= 1


async def test_a_device_cookie_vouches_only_for_its_own_account_and_its_own_budget(
    services: Services,
) -> None:
    settings = make_settings(services, **lockout_settings())
    async with running_restd(settings) as api:
        victim = await api.signup()
        mallory = await api.signup()
        attacker = from_ip(api, ATTACKER_IP)
        # Mallory signs in to her own account: her browser now has a device cookie...
        assert (await login(attacker, mallory.email, mallory.password)).status_code == 200
        # ...which does not exempt her attempts on the victim's email.
        statuses = [(await login(attacker, victim.email, "guess")).status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]

        # A forged cookie (not signed by the server) vouches for nothing either.
        forged = jwt.encode(
            {"sub": victim.id, "did": "f" * 32, "typ": "device", "exp": 2**40},
            "not the server's key, however long it is",
            algorithm="HS256",
        )
        forger = api.client(Cookie=f"device_token={forged}", **{"X-Forwarded-For": "192.0.2.77"})
        refused = await login(forger, victim.email, victim.password)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "login_locked"

        # A known device that fails spends its own lock: after three failures it is
        # locked, and that lock is its own (the owner's other device is not).
        owner = await api.signup()
        laptop, phone = from_ip(api, VICTIM_IP), from_ip(api, "198.51.100.11")
        for client in (laptop, phone):
            assert (await login(client, owner.email, owner.password)).status_code == 200
        fails = [(await login(laptop, owner.email, "wrong")).status_code for _ in range(4)]
        assert fails == [401, 401, 401, 429]
        assert (await login(laptop, owner.email, owner.password)).status_code == 429
        assert (await login(phone, owner.email, owner.password)).status_code == 200

"""Issue 14, defect 2: a client cannot choose its own address.

Forwarded-address headers are believed only from a trusted proxy, and then only
up to the right-most address that is not a trusted proxy, so rotating
X-Forwarded-For or X-Real-IP no longer slips past the per-IP limits.
"""

from __future__ import annotations

import ipaddress

import pytest

from core.settings import SettingsError, load_settings
from restd.handlers.base import client_address
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]
INGRESS = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "real_ip", "trusted", "client"),
    [
        # No trusted proxy: the peer, whatever the headers say.
        ("127.0.0.1", "203.0.113.9", "203.0.113.8", [], "127.0.0.1"),
        # A peer outside the trusted ranges is itself the client.
        ("198.51.100.4", "203.0.113.9", None, INGRESS, "198.51.100.4"),
        # A trusted peer: the right-most address that is not a trusted proxy.
        ("127.0.0.1", "203.0.113.9", None, LOCAL, "203.0.113.9"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.9", None, LOCAL, "203.0.113.9"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3, 10.0.0.7", None, INGRESS, "203.0.113.9"),
        ("127.0.0.1", "2001:db8::5", None, LOCAL, "2001:db8::5"),
        # Every hop trusted: the left-most is as far as we can see.
        ("127.0.0.1", "10.9.9.9, 10.0.0.7", None, INGRESS, "10.9.9.9"),
        # Garbage stops the walk at the proxy that passed it on.
        ("127.0.0.1", "not-an-ip, 10.0.0.7", None, INGRESS, "10.0.0.7"),
        ("127.0.0.1", "", "203.0.113.8", LOCAL, "203.0.113.8"),  # X-Real-IP, no XFF
        ("127.0.0.1", None, None, LOCAL, "127.0.0.1"),
    ],
)
def test_client_address(
    peer: str,
    forwarded_for: str | None,
    real_ip: str | None,
    trusted: list[ipaddress.IPv4Network],
    client: str,
) -> None:
    assert client_address(peer, forwarded_for, real_ip, trusted) == client


def test_trusted_proxies_are_cidrs_from_a_comma_separated_variable() -> None:
    settings = load_settings(_env_file=None, trusted_proxies="127.0.0.1/32, 10.0.0.0/8")
    assert settings.trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8"]
    assert load_settings(_env_file=None).trusted_proxies == []  # the peer is the client
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, trusted_proxies="10.0.0.0/33")
    assert "DEVCONNECT_TRUSTED_PROXIES" in str(caught.value)


def spoofed(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.18.{n // 250}.{n % 250 + 1}", "X-Real-IP": f"198.19.0.{n}"}


async def test_without_trusted_proxies_rotating_headers_are_limited_per_real_peer(
    services: Services,
) -> None:
    settings = make_settings(
        services,
        rate_login_ip_count=3,
        rate_login_ip_window_s=60,
        rate_signup_ip_count=2,
        rate_signup_ip_window_s=3600,
    )
    async with running_restd(settings) as api:
        statuses = []
        for n in range(8):
            resp = await api.client(**spoofed(n)).post(
                "/api/auth/login", json={"email": f"probe{n}@example.com", "password": "x"}
            )
            statuses.append(resp.status_code)
        assert statuses == [401] * 3 + [429] * 5

        signups = []
        for n in range(4):
            resp = await api.client(**spoofed(n)).post(
                "/api/auth/signup",
                json={"name": "S", "email": f"sp{n}@example.com", "password": "long enough"},
            )
            signups.append(resp.status_code)
        # Signup's 409 tells which emails have accounts: per-IP limits bound that probe.
        assert signups == [201, 201, 429, 429]


async def test_behind_a_trusted_proxy_the_forwarded_client_is_honoured(
    services: Services,
) -> None:
    settings = make_settings(
        services,
        trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"],
        rate_login_ip_count=3,
        rate_login_ip_window_s=60,
        rate_login_email_ip_count=100,
        rate_login_email_count=100,
    )
    async with running_restd(settings) as api:
        # Clients behind the proxy are told apart: each has its own budget.
        for n in range(6):
            resp = await api.client(**spoofed(n)).post(
                "/api/auth/login", json={"email": f"probe{n}@example.com", "password": "x"}
            )
            assert resp.status_code == 401, resp.text

        # What a client writes to the left of the proxies' entries changes nothing.
        statuses = []
        for n in range(6):
            headers = {"X-Forwarded-For": f"6.6.6.{n}, 203.0.113.9, 10.0.{n}.7"}
            resp = await api.client(**headers).post(
                "/api/auth/login", json={"email": f"left{n}@example.com", "password": "x"}
            )
            statuses.append(resp.status_code)
        assert statuses == [401] * 3 + [429] * 3

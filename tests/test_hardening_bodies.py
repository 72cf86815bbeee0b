"""Issue 14, defect 1: request bodies are bounded per route before they are read,
and password hashing is bounded by memory and comes after every rate limit.

Refusals are driven over raw sockets: a client that declares a 100 MiB body and
sends none of it must get its 413 at once, which no buffering client can show.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from core.auth import PasswordHashing
from core.settings import Settings
from tests.harness import Services, make_settings
from tests.restd_harness import Api, running_restd

HUNDRED_MIB = 100 * 1024 * 1024
GENEROUS = {
    "rate_login_ip_count": 1000,
    "rate_login_email_count": 1000,
    "rate_login_email_ip_count": 1000,
    "rate_signup_ip_count": 1000,
}


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, closed: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.closed = closed  # the server closed the connection after answering

    def json(self) -> dict[str, object]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout_s)
    rest = await asyncio.wait_for(reader.read(1), timeout_s)  # b"" once the server closes
    return Response(status, headers, body, closed=rest == b"")


def request_head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def declare_only(settings: Settings, method: str, path: str, length: int) -> Response:
    """Send the headers of a ``length``-byte body and none of the body; read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.restd_port)
    try:
        headers = {"Content-Type": "application/json", "Content-Length": str(length)}
        writer.write(request_head(method, path, settings.restd_port, headers))
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


def assert_too_large(resp: Response, limit: int) -> None:
    assert resp.status == 413, resp.body
    assert resp.json() == {
        "error": {
            "code": "payload_too_large",
            "message": "The request body is too large for this endpoint.",
            "details": {"maxBytes": limit},
        }
    }
    assert resp.headers["x-request-id"]
    assert resp.closed, "the connection must close: the unread body is never read"


def padded_login(email: str, password: str, size: int) -> bytes:
    """A valid login body of exactly ``size`` bytes (JSON allows the white space)."""
    body = orjson.dumps({"email": email, "password": password})
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_a_declared_oversized_body_is_refused_413_before_any_of_it_is_sent(
    services: Services,
) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api:
        started = time.monotonic()
        # 100 MiB declared, not one byte sent: the answer cannot have waited for it.
        login = await declare_only(settings, "POST", "/api/auth/login", HUNDRED_MIB)
        assert_too_large(login, settings.auth_body_max_bytes)
        signup = await declare_only(settings, "POST", "/api/auth/signup", HUNDRED_MIB)
        assert_too_large(signup, settings.auth_body_max_bytes)
        assert time.monotonic() - started < 5
        # Authenticated JSON routes take 64 KiB, refused before authentication even runs.
        patch = await declare_only(
            settings, "PATCH", "/api/users/me", settings.json_body_max_bytes + 1
        )
        assert_too_large(patch, settings.json_body_max_bytes)
        # The webhook takes what PhonePe sends (more than the default), no more.
        webhook = await declare_only(
            settings, "POST", "/api/payments/webhook", settings.phonepe_webhook_body_max_bytes + 1
        )
        assert_too_large(webhook, settings.phonepe_webhook_body_max_bytes)
        # Within its limit but without the webhook credentials: refused before the body is read.
        unauthenticated = await declare_only(
            settings, "POST", "/api/payments/webhook", settings.json_body_max_bytes * 2
        )
        assert unauthenticated.status == 401, unauthenticated.body

        metrics = await api.metrics()
        assert 'restd_body_too_large_total{route="/api/auth/login"} 1.0' in metrics
        assert 'restd_requests_total{method="POST",route="/api/auth/login",status="413"} 1.0' in (
            metrics
        )


async def test_a_body_within_the_limit_is_served_and_one_byte_more_is_not(
    services: Services,
) -> None:
    settings = make_settings(services)
    limit = settings.auth_body_max_bytes
    async with running_restd(settings) as api:
        user = await api.signup()
        client = api.client()
        exact = padded_login(user.email, user.password, limit)
        ok = await client.post(
            "/api/auth/login", content=exact, headers={"Content-Type": "application/json"}
        )
        assert ok.status_code == 200, ok.text
        # The same keep-alive connection goes on serving.
        me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {user.token}"})
        assert me.status_code == 200

        over = await declare_only(settings, "POST", "/api/auth/login", limit + 1)
        assert_too_large(over, limit)


async def test_a_chunked_body_is_refused_the_moment_it_passes_the_limit(
    services: Services,
) -> None:
    settings = make_settings(services)
    limit = settings.auth_body_max_bytes
    async with running_restd(settings):
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.restd_port)
        try:
            headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            writer.write(request_head("POST", "/api/auth/login", settings.restd_port, headers))
            chunk = b" " * 1024
            # One chunk past the limit and no further (no terminating chunk): the server
            # must answer from what it has, without waiting for the end of the body.
            for _ in range(limit // len(chunk) + 1):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            resp = await read_response(reader)
        finally:
            writer.close()
        assert_too_large(resp, limit)


async def test_a_body_trickled_slower_than_the_timeout_is_cut_off(services: Services) -> None:
    settings = make_settings(services, http_body_timeout_s=1.0)
    async with running_restd(settings):
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.restd_port)
        try:
            headers = {"Content-Type": "application/json", "Content-Length": "100"}
            writer.write(request_head("POST", "/api/auth/login", settings.restd_port, headers))
            writer.write(b'{"email": ')  # 10 of the 100 bytes, then nothing
            await writer.drain()
            started = time.monotonic()
            rest = await asyncio.wait_for(reader.read(), 10)
            waited = time.monotonic() - started
        finally:
            writer.close()
        assert rest == b"", "no response is owed to a body that never arrived"
        assert 0.5 <= waited < 5, waited


async def _logins(api: Api, n: int) -> list[tuple[int, str | None, str]]:
    clients = [api.client() for _ in range(n)]
    responses = await asyncio.gather(
        *(
            c.post("/api/auth/login", json={"email": f"nobody{i}@example.com", "password": "x"})
            for i, c in enumerate(clients)
        )
    )
    return [
        (r.status_code, r.headers.get("Retry-After"), r.json()["error"]["code"]) for r in responses
    ]


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_hashing_slots_come_from_the_memory_budget() -> None:
    # argon2id's RFC 9106 low-memory profile: 64 MiB per hash.
    assert PasswordHashing(256).memory_cost_kib == 64 * 1024
    assert PasswordHashing(256).slots == 4
    assert PasswordHashing(64).slots == 1
    assert PasswordHashing(100).slots == 1
    assert PasswordHashing(10).slots == 1  # never none: a login must be possible


async def test_concurrent_hashing_is_bounded_and_the_rest_are_told_to_retry(
    services: Services,
) -> None:
    # A 64 MiB budget is one argon2 run at a time; the others wait 50 ms at most.
    settings = make_settings(
        services, **GENEROUS, password_hash_memory_budget_mib=64, password_hash_wait_s=0.05
    )
    async with running_restd(settings) as api:
        results = await _logins(api, 8)
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {401, 503}, results
        assert 401 in statuses and 503 in statuses, results
        for status, retry_after, code in results:
            if status == 503:
                assert code == "busy"
                assert retry_after is not None and int(retry_after) >= 1
        metrics = await api.metrics()
        assert _sample(metrics, "restd_password_hash_busy_total") == statuses.count(503)
        assert _sample(metrics, 'restd_password_hashes_total{op="verify"}') == statuses.count(401)

    # With the default budget (4 at once, a 5 s wait) the same burst all gets answered.
    settings = make_settings(services, **GENEROUS)
    async with running_restd(settings) as api:
        results = await _logins(api, 8)
        assert [status for status, _, _ in results] == [401] * 8, results


async def test_refused_logins_and_signups_never_reach_the_password_hash(
    services: Services,
) -> None:
    settings = make_settings(
        services,
        **{**GENEROUS, "rate_login_ip_count": 3, "rate_signup_ip_count": 2},
    )
    async with running_restd(settings) as api:
        client = api.client()
        statuses = []
        for i in range(10):
            body = {"email": f"flood{i}@example.com", "password": "guess"}
            statuses.append((await client.post("/api/auth/login", json=body)).status_code)
        assert statuses == [401] * 3 + [429] * 7

        for i in range(4):
            await client.post(
                "/api/auth/signup",
                json={"name": f"S{i}", "email": f"s{i}@example.com", "password": "long enough"},
            )
        metrics = await api.metrics()
        # Three checks for three 401s, two hashes for two accounts: the refused
        # attempts cost no argon2 run (64 MiB each).
        assert _sample(metrics, 'restd_password_hashes_total{op="verify"}') == 3
        assert _sample(metrics, 'restd_password_hashes_total{op="hash"}') == 2

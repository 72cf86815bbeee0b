"""Issue 14, defect 6: defaults that are safe for operators.

- The public development JWT secret is refused on any address others can reach,
  whatever DEVCONNECT_ENV says; production also refuses local or plain-http
  origins and PhonePe URLs, and missing or trivial webhook credentials; the
  production overlay passes those checks.
- /readyz names a failing dependency, never the exception text (host names).
- /metrics is served on a port of its own per service, not on the public ports.
- A refused websocket handshake leaves its ?token= in no log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
import time

import httpx
import jwt
import pytest
import yaml

from core.embedded import free_port, redis_process
from core.logs import JsonFormatter
from core.runtime import open_stores
from core.settings import DEV_JWT_SECRET, SettingsError, load_settings
from proto.client import ChatClient, HandshakeRefused
from restd.app import start_restd
from tests.chat_harness import running_chatd
from tests.harness import ROOT, Services, make_settings
from tests.restd_harness import running_restd

K8S = ROOT / "deploy" / "k8s"
REAL_SECRET = "r" * 48


# -- the development secret ----------------------------------------------------------------


@pytest.mark.parametrize("env", ["development", "test"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "api.devconnect.example"])
def test_the_development_secret_is_refused_on_a_public_bind(env: str, host: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, env=env, host=host)
    message = str(caught.value)
    assert "DEVCONNECT_JWT_SECRET" in message
    assert "DEVCONNECT_HOST" in message
    assert "\n" not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_the_development_secret_is_fine_on_loopback(host: str) -> None:
    assert load_settings(_env_file=None, host=host).jwt_secret == DEV_JWT_SECRET


def test_a_public_bind_with_a_secret_of_its_own_starts() -> None:
    assert load_settings(_env_file=None, host="0.0.0.0", jwt_secret=REAL_SECRET).host == "0.0.0.0"


def test_the_image_without_a_secret_refuses_to_start() -> None:
    """The Dockerfile sets DEVCONNECT_HOST=0.0.0.0 and leaves DEVCONNECT_ENV unset."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DEVCONNECT_HOST": "0.0.0.0",
        "DEVCONNECT_RESTD_PORT": str(port),
    }
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "restd"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT / "tests",  # no .env here
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "DEVCONNECT_JWT_SECRET" in line and "development secret" in line
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # it never listened


# -- the production overlay against the production checks ----------------------------------


def _overlay_config(overlay: str) -> dict[str, str]:
    """The ConfigMap the overlay renders: the base's data merged with the overlay's literals."""
    data: dict[str, str] = dict(yaml.safe_load((K8S / "base" / "config.yaml").read_text())["data"])
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    for generator in kustomization.get("configMapGenerator", []):
        if generator["name"] == "devconnect-config":
            data.update(literal.split("=", 1) for literal in generator["literals"])
    return data


def _readme_secret_keys() -> list[str]:
    """The Secret's keys, as deploy/k8s/README.md tells operators to create it."""
    readme = (K8S / "README.md").read_text()
    return sorted(set(re.findall(r"--from-literal=(DEVCONNECT_[A-Z_]+)=", readme)))


def _as_settings(env: dict[str, str]) -> dict[str, object]:
    return {key.removeprefix("DEVCONNECT_").lower(): value for key, value in env.items()}


SECRET_VALUES = {
    "DEVCONNECT_MONGO_URL": "mongodb+srv://u:p@cluster.example.mongodb.net/",
    "DEVCONNECT_REDIS_URLS": "rediss://:p@redis-1.example:6380/0",
    "DEVCONNECT_JWT_SECRET": REAL_SECRET,
    "DEVCONNECT_PHONEPE_CLIENT_ID": "client",
    "DEVCONNECT_PHONEPE_CLIENT_SECRET": "client-secret",
    "DEVCONNECT_PHONEPE_MERCHANT_ID": "M123",
    "DEVCONNECT_PHONEPE_WEBHOOK_USERNAME": "devconnect-webhooks",
    "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD": "0123456789abcdef0123",
}


def test_the_production_overlay_with_the_documented_secret_passes_the_checks() -> None:
    keys = _readme_secret_keys()
    assert set(keys) == set(SECRET_VALUES), "the README's Secret and this test disagree"
    config = _overlay_config("production")
    settings = load_settings(_env_file=None, **_as_settings({**config, **SECRET_VALUES}))
    assert settings.env == "production"
    assert settings.host == "0.0.0.0"
    assert settings.trusted_proxies, "the production overlay must name the ingress range"
    assert settings.restd_metrics_port == 9809 and settings.chatd_metrics_port == 9810

    # Each documented secret is needed: the webhook credentials most of all.
    for key in ("DEVCONNECT_PHONEPE_WEBHOOK_USERNAME", "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD"):
        partial = {k: v for k, v in SECRET_VALUES.items() if k != key}
        with pytest.raises(SettingsError) as caught:
            load_settings(_env_file=None, **_as_settings({**config, **partial}))
        assert key in str(caught.value)


# -- /readyz ---------------------------------------------------------------------------------


async def test_readyz_names_the_failing_dependency_and_logs_why(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.health")
    port = free_port()
    shard = redis_process(port=port).start()
    settings = make_settings(
        services, redis_urls=[services.redis_urls[0], f"redis://127.0.0.1:{port}/0"]
    )
    stores = open_stores(settings)
    running = start_restd(stores)
    try:
        shard.stop()
        async with httpx.AsyncClient(timeout=15) as http:
            down = await http.get(f"http://127.0.0.1:{settings.restd_port}/readyz")
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "failing": {"redis[1]": "unavailable"}}
        assert str(port) not in down.text and "127.0.0.1" not in down.text
        # The operator still learns why, from the log.
        reasons = [r.getMessage() for r in caplog.records if r.name == "core.health"]
        assert any("redis[1]" in r and str(port) in r for r in reasons), reasons
    finally:
        await running.stop()
        await stores.close()
        shard.stop()


# -- /metrics on its own port ----------------------------------------------------------------


async def test_metrics_are_served_on_their_own_ports_and_not_on_the_public_ones(
    services: Services,
) -> None:
    settings = make_settings(services)
    async with running_restd(settings) as api:
        public = await api.client().get("/metrics")
        assert public.status_code == 404
        assert public.json()["error"]["code"] == "not_found"
        text = await api.metrics()
        assert "restd_requests_total" in text and "process_cpu_seconds_total" in text

    async with running_chatd(settings) as chat, httpx.AsyncClient(timeout=15) as http:
        assert (await http.get(chat.http + "/metrics")).status_code == 404
        assert (await http.get(chat.http + "/readyz")).status_code == 200
        scraped = await http.get(chat.metrics_url)
        assert scraped.status_code == 200
        assert "chatd_open_sockets" in scraped.text


async def test_metrics_port_zero_is_off_and_a_busy_one_does_not_stop_the_service(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    off = make_settings(services, restd_metrics_port=0, chatd_metrics_port=0)
    stores = open_stores(off)
    running = start_restd(stores)
    try:
        assert running.metrics_server is None
    finally:
        await running.stop()
        await stores.close()
    async with running_chatd(off) as chat:
        assert chat.running.metrics_server is None

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = make_settings(services, restd_metrics_port=taken.getsockname()[1])
        async with running_restd(busy) as api:
            assert (await api.client().get("/healthz")).status_code == 200
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("DEVCONNECT_RESTD_METRICS_PORT" in e for e in errors), errors


# -- refused handshakes and their tokens -------------------------------------------------------


def _rendered(records: list[logging.LogRecord]) -> list[str]:
    """Every record as the JSON line a service writes (message, extras, traceback)."""
    formatter = JsonFormatter("chatd")
    return [formatter.format(r) for r in records]


async def test_refused_handshakes_leave_no_token_in_any_log_line(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    settings = make_settings(services)
    async with running_chatd(settings) as chat:
        user = await chat.user("target")
        now = int(time.time())
        expired = jwt.encode(
            {"sub": user, "iat": now - 3600, "exp": now - 600, "sid": "s", "typ": "access"},
            settings.jwt_secret,
            algorithm="HS256",
        )
        header, payload, signature = chat.token(user).split(".")
        tampered = ".".join(
            (header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature)
        )
        revoked = chat.token(user)
        await asyncio.sleep(0.01)
        await chat.running.node.authenticator.revoke_all(user)
        await asyncio.sleep(0.01)  # revocation covers tokens issued up to its millisecond
        valid = chat.token(user)

        tokens = {"expired": expired, "tampered": tampered, "revoked": revoked}
        statuses: dict[str, int] = {}
        for name, token in tokens.items():
            with pytest.raises(HandshakeRefused) as refused:
                await ChatClient.connect(chat.url, token, via="query", wait_hello=False)
            statuses[name] = refused.value.status
        with pytest.raises(HandshakeRefused) as refused:
            await ChatClient.connect(
                chat.url, valid, via="query", origin="https://evil.example", wait_hello=False
            )
        statuses["foreign origin"] = refused.value.status
        tokens["foreign origin"] = valid

        chat.running.node.draining = True
        try:
            draining = chat.token(user)
            with pytest.raises(HandshakeRefused) as refused:
                await ChatClient.connect(chat.url, draining, via="query", wait_hello=False)
            statuses["draining"] = refused.value.status
            tokens["draining"] = draining
        finally:
            chat.running.node.draining = False

    assert statuses == {
        "expired": 401,
        "tampered": 401,
        "revoked": 401,
        "foreign origin": 403,
        "draining": 503,
    }
    lines = _rendered(caplog.records)
    # The refusals were logged (so this looked at real lines), by path only.
    assert sum("/ws" in line for line in lines) >= len(tokens), lines
    for name, token in tokens.items():
        for line in lines:
            for part in (token, *token.split(".")[1:]):
                assert part not in line, f"{name} token in a log line: {line}"
    assert not [line for line in lines if "token=" in line]

"""Foundation: settings refusals, idempotent indexes, readiness naming a dead Redis shard."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver
from pymongo import AsyncMongoClient

from core.embedded import LISTEN_PORT_FLOOR, free_port, redis_process
from core.mongo import INDEXES, ensure_indexes
from core.runtime import open_stores
from core.settings import DEV_JWT_SECRET, SettingsError, load_settings
from restd.app import make_app, start_restd
from tests.harness import ROOT, Services, make_settings, settings_env

GOOD_SECRET = "x" * 40


def production(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "env": "production",
        "jwt_secret": GOOD_SECRET,
        "mongo_url": "mongodb://db.example:27017",
        "redis_urls": ["redis://cache.example:6379/0"],
        "cookie_secure": True,
        "allowed_origins": ["https://app.devconnect.example"],
        "phonepe_base_url": "https://api.phonepe.com/apis/pg",
        "phonepe_oauth_url": "https://api.phonepe.com/apis/identity-manager",
        "payment_redirect_url": "https://app.devconnect.example/payments/{orderId}",
        "phonepe_webhook_username": "devconnect-webhooks",
        "phonepe_webhook_password": "w" * 24,
        "_env_file": None,
    }
    values.update(overrides)
    return values


def test_production_accepts_a_complete_configuration() -> None:
    settings = load_settings(**production())
    assert settings.env == "production"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"jwt_secret": DEV_JWT_SECRET}, "DEVCONNECT_JWT_SECRET"),
        ({"jwt_secret": "short"}, "DEVCONNECT_JWT_SECRET"),
        ({"mongo_url": None}, "DEVCONNECT_MONGO_URL"),
        ({"redis_urls": []}, "DEVCONNECT_REDIS_URLS"),
        ({"cookie_secure": False}, "DEVCONNECT_COOKIE_SECURE"),
        ({"allowed_origins": ["http://localhost:5173"]}, "DEVCONNECT_ALLOWED_ORIGINS"),
        ({"allowed_origins": ["https://127.0.0.1:5173"]}, "DEVCONNECT_ALLOWED_ORIGINS"),
        ({"allowed_origins": ["http://app.example"]}, "DEVCONNECT_ALLOWED_ORIGINS"),
        ({"phonepe_base_url": "http://127.0.0.1:8090"}, "DEVCONNECT_PHONEPE_BASE_URL"),
        ({"phonepe_oauth_url": "http://id.example"}, "DEVCONNECT_PHONEPE_OAUTH_URL"),
        ({"payment_redirect_url": "http://x.example/{orderId}"}, "DEVCONNECT_PAYMENT_REDIRECT_URL"),
        ({"phonepe_webhook_username": None}, "DEVCONNECT_PHONEPE_WEBHOOK_USERNAME"),
        ({"phonepe_webhook_password": None}, "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD"),
        ({"phonepe_webhook_password": "secret"}, "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD"),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**production(**override))
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_cli_refuses_in_one_clear_line() -> None:
    env = {"DEVCONNECT_ENV": "production", "DEVCONNECT_JWT_SECRET": "short", "PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "migrate"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        cwd=ROOT / "tests",
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DEVCONNECT_JWT_SECRET" in lines[0]


def test_lists_come_comma_separated_from_the_environment() -> None:
    env = {
        "DEVCONNECT_REDIS_URLS": "redis://a:1/0, redis://b:2/0",
        "DEVCONNECT_ALLOWED_ORIGINS": "https://devconnect.example",
    }
    code = (
        "from core.settings import load_settings; s = load_settings(_env_file=None);"
        "print(s.redis_urls, s.allowed_origins)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "['redis://a:1/0', 'redis://b:2/0'] ['https://devconnect.example']" in out


def test_free_ports_stay_out_of_the_ephemeral_range_and_never_repeat() -> None:
    """Outgoing connections take local ports from the kernel's ephemeral range; a
    listening port picked there can be taken by any client between pick and bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picks = [free_port() for _ in range(500)]
    assert len(set(picks)) == len(picks)
    assert all(LISTEN_PORT_FLOOR <= port < low for port in picks)


async def test_index_creation_is_idempotent(services: Services) -> None:
    settings = make_settings(services)
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(services.mongo_url)
    db = client[settings.mongo_db]
    try:
        first = await ensure_indexes(db)
        second = await ensure_indexes(db)
        # It returns what it created: everything the first time, nothing the second.
        assert first == {
            name: [m.document["name"] for m in models] for name, models in INDEXES.items()
        }
        assert second == {name: [] for name in INDEXES}
        for name, models in INDEXES.items():
            info = await db[name].index_information()
            keys = [tuple((k, abs(int(d))) for k, d in spec["key"]) for spec in info.values()]
            assert len(keys) == len(set(keys)), (name, info)  # nothing created twice
            for model in models:
                spec = model.document["key"]
                if "text" in spec.values():
                    continue  # nx-27017 keeps text indexes in FTS5 and does not list them
                # Directions are not kept by nx-27017, so compare field order only.
                wanted = tuple((k, abs(int(d))) for k, d in spec.items())
                assert wanted in keys or tuple((k, 1) for k, _ in wanted) in keys, (name, spec)
    finally:
        await client.drop_database(settings.mongo_db)
        await client.close()


def test_migrate_command_runs_twice(services: Services) -> None:
    settings = make_settings(services)
    env = settings_env(settings)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "core.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "indexes on" in result.stdout


async def _get(url: str) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, raise_error=False, request_timeout=10)


async def test_readyz_names_a_stopped_redis_shard_and_recovers(services: Services) -> None:
    port = free_port()
    shard = redis_process(port=port).start()
    settings = make_settings(
        services, redis_urls=[services.redis_urls[0], f"redis://127.0.0.1:{port}/0"]
    )
    stores = open_stores(settings)
    running = start_restd(stores)
    base = f"http://127.0.0.1:{settings.restd_port}"
    try:
        ok = await _get(base + "/readyz")
        assert ok.code == 200, ok.body

        shard.stop()
        down = await _get(base + "/readyz")
        assert down.code == 503
        failing = orjson.loads(down.body)["failing"]
        assert list(failing) == ["redis[1]"]

        shard = redis_process(port=port).start()
        for _ in range(50):  # redis-py reconnects on the next command
            back = await _get(base + "/readyz")
            if back.code == 200:
                break
            await asyncio.sleep(0.1)
        assert back.code == 200, back.body

        health = await _get(base + "/healthz")
        assert health.code == 200
        assert health.headers["X-Request-ID"]
        # The metrics are on their own port, not on the API's.
        assert (await _get(base + "/metrics")).code == 404
        metrics = await _get(f"http://127.0.0.1:{settings.restd_metrics_port}/metrics")
        assert b"process_cpu_seconds_total" in metrics.body
    finally:
        await running.stop()
        await stores.close()
        shard.stop()


async def test_request_id_is_echoed(services: Services) -> None:
    settings = make_settings(services)
    stores = open_stores(settings)
    server = tornado.httpserver.HTTPServer(make_app(stores))
    server.listen(settings.restd_port, address="127.0.0.1")
    try:
        client = tornado.httpclient.AsyncHTTPClient()
        resp = await client.fetch(
            f"http://127.0.0.1:{settings.restd_port}/healthz",
            headers={"X-Request-ID": "abc-123"},
        )
        assert resp.headers["X-Request-ID"] == "abc-123"
    finally:
        server.stop()
        await stores.close()


def test_celery_worker_answers(services: Services) -> None:
    from tests.harness import celery_worker
    from workers.app import make_celery

    settings = make_settings(services)
    with celery_worker(settings, services.workdir / "worker.log"):
        app = make_celery(settings)
        assert app.send_task("workers.ping").get(timeout=20) == "pong"

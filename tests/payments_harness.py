"""The PhonePe simulator for a test: a real subprocess on a free port, stopped by PID.

``payment_settings`` gives a test settings whose provider is the simulator
(credentials shared by both sides, fast retries, reconciliation due at once);
``running_simulator`` starts ``python -m tooling.phonepe_simulator`` with them,
its webhooks pointed at the test's restd; ``Simulator`` drives it over HTTP the
way a browser (the pay page) and an operator (the /sim switches) would.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from core.embedded import ManagedProcess, free_port
from core.logs import JsonFormatter
from core.mongo import PAYMENTS
from core.settings import Settings
from domain.payments.webhook import webhook_auth_value
from tests.harness import ROOT, Services, make_settings, settings_env
from tests.restd_harness import Api, User

CREDENTIALS: dict[str, object] = {
    "phonepe_client_id": "DCTESTCLIENT",
    "phonepe_client_secret": "test-client-secret",
    "phonepe_client_version": 1,
    "phonepe_merchant_id": "DCTESTMERCHANT",
    "phonepe_webhook_username": "devconnect_test",
    "phonepe_webhook_password": "webhook123pass",
}


def payment_settings(services: Services, **overrides: object) -> Settings:
    port = free_port()
    values: dict[str, object] = {
        **CREDENTIALS,
        "phonepe_simulator_port": port,
        "phonepe_base_url": f"http://127.0.0.1:{port}",
        "phonepe_retry_backoff_s": 0.01,
        "phonepe_timeout_s": 5.0,
        "payments_reconcile_delay_s": 0.0,
        "payments_reconcile_backoff_s": 0.0,
        "payment_redirect_url": "http://localhost:5173/payments/{orderId}",
    }
    values.update(overrides)
    return make_settings(services, **values)


def auth_header(settings: Settings) -> dict[str, str]:
    """The webhook Authorization PhonePe sends for these settings' credentials."""
    return {
        "Authorization": webhook_auth_value(
            settings.phonepe_webhook_username or "", settings.phonepe_webhook_password or ""
        )
    }


@dataclass
class Simulator:
    base_url: str
    settings: Settings
    http: httpx.AsyncClient

    async def pay(self, payment_url: str, action: str = "pay", webhook: str = "normal") -> None:
        """Click a button on the hosted pay page, as the paying user's browser would."""
        page = await self.http.get(payment_url)
        assert page.status_code == 200, page.text
        assert "Pay" in page.text
        token = httpx.URL(payment_url).params["token"]
        resp = await self.http.post(
            "/transact/uat_v2/pay",
            params={"token": token},
            data={"action": action, "webhook": webhook},
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text
        assert resp.headers["Location"].startswith("http://localhost:5173/payments/DC")

    async def faults(self, endpoint: str, *statuses: int) -> None:
        resp = await self.http.post(
            "/sim/faults", json={"endpoint": endpoint, "statuses": statuses}
        )
        assert resp.status_code == 200, resp.text

    async def configure(self, **values: Any) -> None:
        resp = await self.http.post("/sim/config", json=values)
        assert resp.status_code == 200, resp.text

    async def revoke_tokens(self) -> None:
        assert (await self.http.post("/sim/tokens/revoke")).status_code == 200

    async def expire(self, merchant_order_id: str) -> None:
        assert (await self.http.post(f"/sim/orders/{merchant_order_id}/expire")).status_code == 200

    async def stats(self) -> dict[str, int]:
        resp = await self.http.get("/sim/stats")
        assert resp.status_code == 200
        return dict(resp.json())


@asynccontextmanager
async def running_simulator(settings: Settings, log_path: Path) -> AsyncIterator[Simulator]:
    port = settings.phonepe_simulator_port
    argv = [
        sys.executable,
        "-m",
        "tooling.phonepe_simulator",
        "--port",
        str(port),
        "--webhook-url",
        f"http://127.0.0.1:{settings.restd_port}/api/payments/webhook",
        "--client-id",
        settings.phonepe_client_id or "",
        "--client-secret",
        settings.phonepe_client_secret or "",
        "--client-version",
        str(settings.phonepe_client_version),
        "--merchant-id",
        settings.phonepe_merchant_id or "",
        "--webhook-username",
        settings.phonepe_webhook_username or "",
        "--webhook-password",
        settings.phonepe_webhook_password or "",
    ]
    env = settings_env(settings)
    env["PYTHONPATH"] = str(ROOT)
    proc = ManagedProcess("phonepe-simulator", argv, port, log_path, env).start()
    base = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=base, timeout=15.0)
    try:
        yield Simulator(base, settings, http)
    finally:
        await http.aclose()
        proc.stop()


class Lines(logging.Handler):
    """Formatted log lines as restd's JSON formatter writes them (request id included)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("restd"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def buy(api: Api, user: User, plan: str = "pro-monthly") -> dict[str, Any]:
    resp = await user.http.post("/api/payments/create", json={"plan": plan})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    assert body["orderId"].startswith("DC")
    assert body["status"] == "PENDING"
    return body


async def stored(api: Api, order_id: str) -> dict[str, Any]:
    doc = await api.stores.db[PAYMENTS].find_one({"merchantOrderId": order_id})
    assert doc is not None
    return doc


def completed_event(settings: Settings, order: dict[str, Any]) -> dict[str, Any]:
    """The webhook PhonePe sends for this stored order, byte for byte what the simulator sends."""
    return {
        "event": "checkout.order.completed",
        "type": "CHECKOUT_ORDER_COMPLETED",
        "payload": {
            "merchantId": settings.phonepe_merchant_id,
            "merchantOrderId": order["merchantOrderId"],
            "orderId": order["providerOrderId"],
            "state": "COMPLETED",
            "amount": order["amount"],
            "expireAt": order["expireAtMs"],
            "paymentDetails": [],
        },
    }

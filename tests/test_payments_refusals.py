"""Refusals: each answers a clear error in restd's shape and changes no state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId

from core.mongo import PAYMENTS, USERS
from core.settings import Settings
from tests.harness import Services
from tests.payments_harness import (
    auth_header,
    buy,
    completed_event,
    metric,
    payment_settings,
    running_simulator,
    stored,
)
from tests.restd_harness import Api, User, running_restd


def refused(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


async def untouched(api: Api, user: User, order_id: str) -> None:
    """The order is still pending and the user has no membership."""
    assert (await stored(api, order_id))["status"] == "PENDING"
    doc = await api.stores.db[USERS].find_one({"_id": ObjectId(user.id)})
    assert doc is not None and "membership" not in doc


async def test_webhooks_refused_before_any_state_change(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with (
        running_simulator(settings, tmp_path / "sim.log") as sim,
        running_restd(settings) as api,
    ):
        alice = await api.signup("Alice")
        order = await buy(api, alice)
        await sim.pay(order["paymentUrl"], webhook="lost")  # paid at the provider, not here
        event = completed_event(settings, await stored(api, order["orderId"]))
        signed = api.client(**auth_header(settings))
        url = "/api/payments/webhook"

        refused(await api.client().post(url, json=event), 401, "invalid_signature")
        wrong = payment_settings(services, phonepe_webhook_password="guessed1234")
        forged = api.client(**auth_header(wrong))
        refused(await forged.post(url, json=event), 401, "invalid_signature")
        basic = api.client(Authorization="Basic ZGV2Y29ubmVjdDp4")
        refused(await basic.post(url, json=event), 401, "invalid_signature")
        # Verified before parsing: a forged body that is not even JSON gets the same 401.
        refused(await forged.post(url, content=b"{not json"), 401, "invalid_signature")
        refused(await signed.post(url, content=b"{not json"), 400, "invalid_json")

        def changed(**payload: Any) -> dict[str, Any]:
            return {**event, "payload": {**event["payload"], **payload}}

        refused(await signed.post(url, json=changed(amount=100)), 400, "amount_mismatch")
        refused(await signed.post(url, json=changed(merchantId="OTHER")), 400, "merchant_mismatch")
        refused(await signed.post(url, json=changed(orderId="OMO1")), 400, "order_mismatch")
        unknown = changed(merchantOrderId=f"DC{ObjectId()}")
        refused(await signed.post(url, json=unknown), 404, "unknown_order")
        await untouched(api, alice, order["orderId"])

        # Events and states with nothing to do are acknowledged and ignored.
        refund = {**event, "event": "pg.refund.completed"}
        assert (await signed.post(url, json=refund)).json() == {"result": "ignored"}
        attempt = changed(state="PENDING")
        attempt["event"] = "checkout.order.completed"
        assert (await signed.post(url, json=attempt)).json() == {"result": "ignored"}
        await untouched(api, alice, order["orderId"])

        text = await api.metrics()
        assert metric(text, "payments_webhooks_total", result="rejected_auth") == 4
        assert metric(text, "payments_webhooks_total", result="rejected_amount") == 1
        assert metric(text, "payments_webhooks_total", result="rejected_unknown_order") == 1

        # Then the genuine one is applied.
        assert (await signed.post(url, json=event)).json() == {"result": "applied"}


async def test_webhooks_fail_closed_without_credentials(services: Services) -> None:
    settings = payment_settings(
        services, phonepe_webhook_username=None, phonepe_webhook_password=None
    )
    async with running_restd(settings) as api:
        configured = payment_settings(services)
        hook = api.client(**auth_header(configured))
        body = {"event": "checkout.order.completed", "payload": {}}
        resp = await hook.post("/api/payments/webhook", json=body)
        refused(resp, 401, "webhook_not_configured")
        resp = await api.client(Authorization="").post("/api/payments/webhook", json=body)
        refused(resp, 401, "webhook_not_configured")


async def test_orders_are_private_to_their_owner(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with (
        running_simulator(settings, tmp_path / "sim.log"),
        running_restd(settings) as api,
    ):
        alice, mallory = await api.signup("Alice"), await api.signup("Mallory")
        order = await buy(api, alice)
        path = f"/api/payments/{order['orderId']}"
        refused(await mallory.http.get(path), 404, "unknown_order")
        refused(await api.client().get(path), 401, "invalid_token")
        refused(await alice.http.get(f"/api/payments/DC{ObjectId()}"), 404, "unknown_order")
        assert (await alice.http.get(path)).status_code == 200


async def _create(user: User, body: dict[str, Any]) -> httpx.Response:
    return await user.http.post("/api/payments/create", json=body)


async def _orders(api: Api) -> int:
    return await api.stores.db[PAYMENTS].count_documents({})


async def test_the_client_never_sets_the_price(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with (
        running_simulator(settings, tmp_path / "sim.log"),
        running_restd(settings) as api,
    ):
        alice = await api.signup("Alice")
        error = refused(await _create(alice, {"plan": "pro-lifetime"}), 422, "unknown_plan")
        assert error["details"]["plans"] == ["pro-monthly", "pro-yearly"]
        error = refused(
            await _create(alice, {"plan": "pro-monthly", "amount": 100}), 422, "amount_mismatch"
        )
        assert error["details"]["amount"] == 29_900
        refused(await _create(alice, {"amount": 12_345}), 422, "amount_mismatch")
        refused(await _create(alice, {}), 422, "plan_required")
        refused(await _create(alice, {"plan": "pro-monthly", "price": 1}), 422, "validation_failed")
        assert await _orders(api) == 0

        # The design's {amount} is accepted when it is exactly one plan's price.
        by_amount = await _create(alice, {"amount": 299_900})
        assert by_amount.status_code == 201, by_amount.text
        assert by_amount.json()["plan"] == "pro-yearly"
        confirmed = await _create(alice, {"plan": "pro-monthly", "amount": 29_900})
        assert confirmed.status_code == 201, confirmed.text
        assert await _orders(api) == 2


async def test_a_provider_failure_answers_502_and_leaves_the_order_failed(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services, phonepe_retry_attempts=2)
    async with (
        running_simulator(settings, tmp_path / "sim.log") as sim,
        running_restd(settings) as api,
    ):
        alice = await api.signup("Alice")
        await sim.faults("pay", 500, 503)
        error = refused(await _create(alice, {"plan": "pro-monthly"}), 502, "provider_error")
        order_id = error["details"]["orderId"]
        doc = await stored(api, order_id)
        assert doc["status"] == "FAILED" and doc["settledBy"] == "create"
        assert doc["providerPayload"]["httpStatus"] == 503
        assert (await alice.http.get(f"/api/payments/{order_id}")).json()["status"] == "FAILED"
        assert (await sim.stats())["calls.pay"] == 2
        text = await api.metrics()
        assert metric(text, "payments_orders_total", outcome="provider_error") == 1
        # The provider is back: the next attempt works.
        assert (await _create(alice, {"plan": "pro-monthly"})).status_code == 201


async def test_unconfigured_payments_and_the_per_user_rate_limit(
    services: Services, tmp_path: Path
) -> None:
    unconfigured = payment_settings(services, phonepe_client_id=None)
    async with running_restd(unconfigured) as api:
        alice = await api.signup("Alice")
        refused(await _create(alice, {"plan": "pro-monthly"}), 503, "payments_unavailable")
        assert await _orders(api) == 0

    settings: Settings = payment_settings(services, rate_payment_create_count=2)
    async with (
        running_simulator(settings, tmp_path / "sim.log"),
        running_restd(settings) as api,
    ):
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        for _ in range(2):
            assert (await _create(alice, {"plan": "pro-monthly"})).status_code == 201
        resp = await _create(alice, {"plan": "pro-monthly"})
        refused(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) > 0
        assert (await _create(bob, {"plan": "pro-monthly"})).status_code == 201
        assert await _orders(api) == 3

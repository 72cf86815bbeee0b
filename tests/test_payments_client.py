"""The PhonePe client's token cache and retry rules, against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from core.embedded import free_port
from domain.payments.phonepe import (
    PhonePeClient,
    PhonePeConfig,
    ProviderRefused,
    ProviderUnavailable,
)
from tests.harness import Services
from tests.payments_harness import Simulator, payment_settings, running_simulator


class Clock:
    """Time for the token cache, moved by the test (the provider keeps real time)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


async def _order(client: PhonePeClient, n: int = 0) -> str:
    merchant_order_id = f"DCTEST{time.time_ns()}{n}"
    created = await client.create_payment(
        merchant_order_id=merchant_order_id,
        amount_paise=29_900,
        redirect_url="http://localhost:5173/payments/x",
        expire_after_s=1200,
        message="test",
    )
    assert created.state == "PENDING"
    assert created.orderId.startswith("OMO")
    assert "/transact/uat_v2?token=" in created.redirectUrl
    return merchant_order_id


def _client(sim: Simulator, clock: Clock | None = None, **changes: object) -> PhonePeClient:
    config = PhonePeConfig.from_settings(sim.settings)
    if changes:
        config = PhonePeConfig(**{**config.__dict__, **changes})  # type: ignore[arg-type]
    return PhonePeClient(config, clock=clock or Clock())


async def test_the_token_is_fetched_once_and_shared_by_concurrent_calls(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        client = _client(sim)
        order = await _order(client)
        results = await asyncio.gather(*(client.order_status(order) for _ in range(10)))
        assert {status.state for status, _raw in results} == {"PENDING"}
        stats = await sim.stats()
        assert stats["tokens.issued"] == 1
        assert stats["calls.status"] == 10
        assert client.token_fetches == 1


async def test_the_token_is_refreshed_at_half_its_life_before_it_expires(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        await sim.configure(tokenTtlSeconds=600)
        clock = Clock()
        client = _client(sim, clock)
        order = await _order(client)
        clock.offset_s = 250  # before half-life: the cached token is used
        await client.order_status(order)
        assert (await sim.stats())["tokens.issued"] == 1
        clock.offset_s = 301  # past half-life, still valid: refreshed ahead of expiry
        await client.order_status(order)
        stats = await sim.stats()
        assert stats["tokens.issued"] == 2
        assert stats.get("rejected.token", 0) == 0  # no call ever went out with a dead token


async def test_a_401_forces_exactly_one_refresh_then_succeeds(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        client = _client(sim)
        order = await _order(client)
        await sim.revoke_tokens()  # the provider forgets the token the client caches
        status, _raw = await client.order_status(order)
        assert status.state == "PENDING"
        stats = await sim.stats()
        assert stats["tokens.issued"] == 2
        assert stats["rejected.token"] == 1
        assert stats["calls.status"] == 2


async def test_a_second_401_is_final_after_one_refresh(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        client = _client(sim)
        order = await _order(client)
        await sim.faults("status", 401, 401, 401)
        with pytest.raises(ProviderRefused) as refused:
            await client.order_status(order)
        assert refused.value.status == 401
        stats = await sim.stats()
        assert stats["tokens.issued"] == 2  # exactly one refresh
        assert stats["calls.status"] == 2  # the call, and its one retry with the new token


async def test_5xx_and_429_are_retried_within_the_bound(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services, phonepe_retry_attempts=3)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        client = _client(sim)
        order = await _order(client)
        await sim.faults("status", 500, 429)
        status, _raw = await client.order_status(order)
        assert status.state == "PENDING"
        assert (await sim.stats())["calls.status"] == 3

        await sim.faults("status", 503, 503, 503)
        with pytest.raises(ProviderUnavailable) as down:
            await client.order_status(order)
        assert down.value.status == 503
        assert (await sim.stats())["calls.status"] == 6  # three attempts, then it gives up

        # The token endpoint follows the same rules: a 502 during the forced refresh.
        await sim.revoke_tokens()
        await sim.faults("token", 502)
        await client.order_status(order)  # 401, token 502 then 200, status 200
        stats = await sim.stats()
        assert stats["tokens.issued"] == 2
        assert stats["faults.token"] == 1


async def test_other_4xx_are_not_retried(services: Services, tmp_path: Path) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        client = _client(sim)
        await sim.faults("pay", 400)
        with pytest.raises(ProviderRefused) as refused:
            await _order(client)
        assert refused.value.status == 400
        assert (await sim.stats())["calls.pay"] == 1
        with pytest.raises(ProviderRefused):
            await client.order_status("DCNOSUCHORDER")  # the provider's 404
        assert (await sim.stats())["calls.status"] == 1


async def test_bad_credentials_and_an_unreachable_provider(
    services: Services, tmp_path: Path
) -> None:
    settings = payment_settings(services)
    async with running_simulator(settings, tmp_path / "sim.log") as sim:
        wrong = _client(sim, client_secret="not-the-secret")
        with pytest.raises(ProviderRefused) as refused:
            await wrong.order_status("DCX")
        assert refused.value.status == 401
        assert (await sim.stats()).get("tokens.issued", 0) == 0
    closed = _client(
        sim,
        base_url=f"http://127.0.0.1:{free_port()}",
        oauth_url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(ProviderUnavailable):
        await closed.order_status("DCX")

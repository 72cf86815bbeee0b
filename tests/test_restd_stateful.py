"""schemathesis in stateful mode: chains of calls along the document's OpenAPI
links (signup/login -> the user, a request -> its answer or withdrawal, an
order -> its state, conversations -> history) against the live server, every
response checked against the document: status code, content type and schema,
not only the absence of 5xx."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful import run_state_machine_as_test

from chatd.inbox import Inbox
from chatd.store import MessageStore
from core.auth import TokenIssuer
from core.runtime import open_stores
from core.settings import Settings
from tests.harness import Services
from tests.payments_harness import payment_settings, running_simulator
from tests.restd_harness import PASSWORD, restd_in_thread

# Phase 1: the whole document, every operation a possible step.
SCENARIOS = 50  # each a chain of up to STEPS calls
STEPS = 10
# Phase 2: only the linked operations, until every chain has been walked to its end.
CHAIN_SCENARIOS = 25
CHAIN_MAX_SCENARIOS = 150
CHAIN_OPERATIONS = [
    "post_api_auth_signup",
    "post_api_auth_login",
    "get_api_users_user_id",
    "post_api_connection_requests",
    "patch_api_connection_requests_request_id",
    "delete_api_connection_requests_request_id",
    "get_api_payments_plans",
    "post_api_payments_create",
    "get_api_payments_order_id",
    "get_api_conversations",
    "get_api_conversations_conversation_id_messages",
]
# What only a followed link gives data to: each answers with it at least once.
LINK_TARGETS = {
    "GET /api/users/{user_id} -> 200",
    "POST /api/connection-requests -> 201",
    "DELETE /api/connection-requests/{request_id} -> 200",
    "POST /api/payments/create -> 201",
    "GET /api/payments/{order_id} -> 200",
    "GET /api/conversations/{conversation_id}/messages -> 200",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Budgets no bounded run reaches, so the chains see real answers rather than 429s.
GENEROUS = 1_000_000
RATE_LIMITS: dict[str, object] = {
    "rate_user_count": GENEROUS,
    "rate_signup_ip_count": GENEROUS,
    "rate_login_ip_count": GENEROUS,
    "rate_login_email_count": GENEROUS,
    "rate_login_email_ip_count": GENEROUS,
    "rate_login_device_count": GENEROUS,
    "rate_payment_create_count": GENEROUS,
    "connection_requests_per_day_free": GENEROUS,
    "connection_requests_per_day_pro": GENEROUS,
}


@dataclass
class Walk:
    """Runs a schema's state machine against the live server as the seeded user.

    Check failures are collected, not raised: Hypothesis would replay a failing
    scenario to confirm it, and a live server's state has moved on by then.
    """

    base: str
    issuer: TokenIssuer
    user_id: str
    session: requests.Session = field(default_factory=requests.Session)
    calls: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    scenarios: int = 0

    def machine(self, schema: Any) -> Any:
        walk = self

        class Chains(schema.as_state_machine()):  # type: ignore[misc]
            def setup(self) -> None:
                walk.scenarios += 1

            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                # A fresh token each call: logout-all revokes every earlier one.
                token = walk.issuer.issue_access(walk.user_id)
                return {
                    "base_url": walk.base,
                    "session": walk.session,
                    "headers": {"Authorization": f"Bearer {token}"},
                }

            def validate_response(
                self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
            ) -> None:
                label = f"{case.operation.label} -> {response.status_code}"
                walk.calls[label] += 1
                try:
                    case.validate_response(
                        response,
                        checks=CHECKS,
                        transport_kwargs=kwargs or None,
                        recorder=getattr(self, "recorder", None),
                    )
                except FailureGroup as exc:
                    walk.failures.append(f"{label}: {exc}\n{case.as_curl_command()}")

        return Chains

    def run(self, schema: Any, scenarios: int, until: set[str], max_scenarios: int) -> None:
        """At least ``scenarios`` scenarios, then more until every label in ``until``
        was answered (which links a scenario follows is random), up to a bound.

        Hypothesis may find a new scenario's draws disagree with an earlier one
        (Flaky): the server's answers, and so the enabled rules, depend on its
        state. Another suite starts then, as schemathesis' own runner does.
        """
        machine = self.machine(schema)
        goal = self.scenarios + scenarios
        bound = self.scenarios + max_scenarios
        while self.scenarios < goal or (not until <= set(self.calls) and self.scenarios < bound):
            try:
                run_state_machine_as_test(
                    machine,
                    settings=settings(
                        max_examples=max(goal - self.scenarios, 10),
                        stateful_step_count=STEPS,
                        phases=[Phase.generate],
                        deadline=None,
                        database=None,
                        suppress_health_check=list(HealthCheck),
                    ),
                )
            except Flaky:
                continue


def _seed(base: str) -> tuple[str, str]:
    """Two connected users; returns their ids (the first one drives the run)."""
    with httpx.Client(base_url=base, timeout=15.0) as http:
        ids: list[str] = []
        tokens: list[str] = []
        for name in ("State A", "State B"):
            resp = http.post(
                "/api/auth/signup",
                json={
                    "name": name,
                    "email": f"{name.replace(' ', '').lower()}@example.com",
                    "password": PASSWORD,
                },
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["user"]["id"])
            tokens.append(resp.json()["accessToken"])
        sent = http.post(
            "/api/connection-requests",
            json={"toUserId": ids[1]},
            headers={"Authorization": f"Bearer {tokens[0]}"},
        )
        assert sent.status_code == 201, sent.text
        answer = http.patch(
            f"/api/connection-requests/{sent.json()['id']}",
            json={"status": "accepted"},
            headers={"Authorization": f"Bearer {tokens[1]}"},
        )
        assert answer.status_code == 200, answer.text
        return ids[0], ids[1]


async def _write_message(app_settings: Settings, sender: str, recipient: str) -> None:
    """One message with chatd's own writer (restd only reads them), so history has data."""
    stores = open_stores(app_settings)
    inbox = Inbox(stores.db)
    inbox.start()
    store = MessageStore(stores.db, inbox)
    store.start()
    try:
        await store.submit(sender, recipient, uuid.uuid4().hex, "hello", time.monotonic())
        await inbox.flushed()
    finally:
        await store.close()
        await inbox.close()
        await stores.close()


@pytest.mark.timeout(420)
def test_stateful_chains_along_the_links_conform_to_the_document(
    services: Services, tmp_path: Path
) -> None:
    app_settings = payment_settings(services, **RATE_LIMITS)
    issuer = TokenIssuer(app_settings.jwt_secret, app_settings.jwt_access_ttl_s)
    # The PhonePe simulator, so that payment creation answers 201 and its link is followed.
    loop = asyncio.new_event_loop()
    simulator = running_simulator(app_settings, tmp_path / "simulator.log")
    loop.run_until_complete(simulator.__aenter__())
    try:
        with restd_in_thread(app_settings) as base:
            user_id, other_id = _seed(base)
            loop.run_until_complete(_write_message(app_settings, other_id, user_id))
            document = httpx.get(base + "/api/openapi.json", timeout=15.0).json()
            schema = schemathesis.openapi.from_dict(document)
            walk = Walk(base, issuer, user_id)
            walk.run(schema, SCENARIOS, set(), SCENARIOS)
            everything = walk.scenarios
            chains = schema.include(operation_id=CHAIN_OPERATIONS)
            walk.run(chains, CHAIN_SCENARIOS, LINK_TARGETS, CHAIN_MAX_SCENARIOS)
    finally:
        loop.run_until_complete(simulator.__aexit__(None, None, None))
        loop.close()
    print(f"\n{everything} scenarios over the document, {walk.scenarios - everything} on chains")
    print("\n".join(f"{n:5d}  {label}" for label, n in sorted(walk.calls.items())))
    assert not walk.failures, "\n\n".join(walk.failures)
    assert everything >= SCENARIOS
    # The chains were really walked: each link's target answered with data behind it.
    assert set(walk.calls) >= LINK_TARGETS, sorted(LINK_TARGETS - set(walk.calls))

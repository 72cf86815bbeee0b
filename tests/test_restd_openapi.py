"""The OpenAPI 3.1 document, and a bounded property-based run of it against the
live server (schemathesis) that must find no 5xx response."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from core.auth import TokenIssuer
from restd.routes import ROUTES, openapi_document
from tests.harness import Services, make_settings
from tests.restd_harness import PASSWORD, restd_in_thread

EXAMPLES_PER_OPERATION = 25


def test_document_is_openapi_3_1_generated_from_the_models() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {route.template for route in ROUTES}
    schemas = doc["components"]["schemas"]
    assert {"SignupBody", "AuthResult", "ErrorBody", "MessagePage", "ProfilePatch"} <= set(schemas)
    signup = doc["paths"]["/api/auth/signup"]["post"]
    assert signup["security"] == []
    assert set(signup["responses"]) == {"201", "400", "403", "409", "413", "422", "429", "503"}
    # Every limit is documented with its wait; every bounded body with its refusal.
    assert set(signup["responses"]["429"]["headers"]) == {"Retry-After"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if "requestBody" in operation or method in ("post", "put", "patch"):
                assert "413" in responses, (method, path)
            for code in ("429", "503"):
                if code in responses:
                    assert "Retry-After" in responses[code]["headers"], (method, path, code)
    history = doc["paths"]["/api/conversations/{conversation_id}/messages"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"conversation_id", "limit", "before"}
    assert {"bearerAuth": []} in history["security"]
    # Loads as a valid schema for schemathesis too.
    assert len(list(schemathesis.openapi.from_dict(doc).get_all_operations())) == sum(
        len(route.handler.operations) for route in ROUTES
    )


def _seed(base: str) -> tuple[str, str]:
    """Two connected users, so the fuzzer also reaches paths with data behind them."""
    with httpx.Client(base_url=base, timeout=15.0) as http:
        ids = []
        tokens = []
        for name in ("Fuzz A", "Fuzz B"):
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
        return ids[0], ids[1]


@pytest.mark.timeout(240)
def test_fuzzing_the_live_server_from_its_openapi_document_finds_no_5xx(
    services: Services,
) -> None:
    app_settings = make_settings(services, rate_user_count=100_000)
    issuer = TokenIssuer(app_settings.jwt_secret, app_settings.jwt_access_ttl_s)
    with restd_in_thread(app_settings) as base:
        user_id, _other = _seed(base)
        document = httpx.get(base + "/api/openapi.json", timeout=15.0).json()
        schema = schemathesis.openapi.from_dict(document)
        session = requests.Session()
        failures: list[str] = []
        calls = 0

        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                def run(case: Any) -> None:
                    nonlocal calls
                    calls += 1
                    # A fresh token each call: logout-all revokes every earlier one.
                    token = issuer.issue_access(user_id)
                    case.call_and_validate(
                        base_url=base,
                        session=session,
                        headers={"Authorization": f"Bearer {token}"},
                        checks=[not_a_server_error],
                    )

                try:
                    run()
                except Unsatisfiable:
                    # Negative mode for an operation with no inputs: nothing to make invalid.
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except Exception as exc:  # collect every operation's failure, then report
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
        assert not failures, "\n\n".join(failures)
        assert calls > 100  # the run really exercised the API

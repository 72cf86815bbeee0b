"""Connection requests, connections and blocks over real HTTP, with the exact
bus events each action publishes for chatd (STYLE 18)."""

from __future__ import annotations

from typing import Any

import httpx

from core.relations import are_connected
from tests.harness import Services, make_settings
from tests.restd_harness import Api, User, running_restd


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    """(kind, event type, other user) of each bus message, in order."""
    return [(e["kind"], (e.get("event") or {}).get("type"), e.get("otherUserId")) for e in events]


def error_code(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    return str(resp.json()["error"]["code"])


async def _ask(a: User, b: User, message: str = "") -> httpx.Response:
    return await a.http.post(
        "/api/connection-requests", json={"toUserId": b.id, "message": message}
    )


async def _connected(api: Api, a: User, b: User) -> bool:
    return await are_connected(api.stores.db, a.id, b.id)


async def test_a_request_is_created_listed_and_pushed_to_its_recipient(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        async with api.events(bob.id) as to_bob, api.events(alice.id) as to_alice:
            sent = await _ask(alice, bob, "  Hi Bob! ")
            assert sent.status_code == 201, sent.text
            bob_events, alice_events = await to_bob.published(), await to_alice.published()
        request = sent.json()
        assert request["status"] == "pending"
        assert request["message"] == "Hi Bob!"
        assert (request["fromUserId"], request["toUserId"]) == (alice.id, bob.id)
        assert request["fromUser"]["name"] == "Alice"

        assert kinds(bob_events) == [("deliver", "connection-request", None)]
        assert bob_events[0]["event"]["data"] == request
        assert alice_events == []

        incoming = (await bob.http.get("/api/connection-requests")).json()
        assert [r["id"] for r in incoming["items"]] == [request["id"]]
        outgoing = await alice.http.get(
            "/api/connection-requests", params={"direction": "outgoing", "status": "pending"}
        )
        assert [r["id"] for r in outgoing.json()["items"]] == [request["id"]]
        none = await alice.http.get("/api/connection-requests", params={"direction": "incoming"})
        assert none.json()["items"] == []
        accepted = await bob.http.get("/api/connection-requests", params={"status": "accepted"})
        assert accepted.json()["items"] == []
        bad = await bob.http.get("/api/connection-requests", params={"direction": "sideways"})
        assert error_code(bad, 422) == "validation_failed"


async def test_requests_to_yourself_twice_unknown_or_connected_users_are_refused(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob = await api.signup(), await api.signup()
        assert error_code(await _ask(alice, alice), 409) == "self_request"
        assert (await _ask(alice, bob)).status_code == 201
        assert error_code(await _ask(alice, bob), 409) == "request_pending"
        ghost = await alice.http.post(
            "/api/connection-requests", json={"toUserId": "0123456789abcdef01234567"}
        )
        assert error_code(ghost, 404) == "not_found"
        malformed = await alice.http.post("/api/connection-requests", json={"toUserId": "bob"})
        assert error_code(malformed, 422) == "validation_failed"
        assert malformed.json()["error"]["details"][0]["field"] == "toUserId"

        # Bob asking back while Alice's request is pending accepts both.
        async with api.events(alice.id) as to_alice:
            back = await _ask(bob, alice)
            assert back.status_code == 201, back.text
            alice_events = await to_alice.published()
        assert back.json()["status"] == "accepted"
        assert await _connected(api, alice, bob)
        assert kinds(alice_events) == [
            ("deliver", "connection-accepted", None),
            ("connection-changed", None, bob.id),
        ]
        outgoing = await alice.http.get(
            "/api/connection-requests", params={"direction": "outgoing"}
        )
        assert [r["status"] for r in outgoing.json()["items"]] == ["accepted"]
        assert error_code(await _ask(alice, bob), 409) == "already_connected"


async def test_only_the_recipient_answers_and_only_the_sender_withdraws(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob, eve = await api.signup("Alice"), await api.signup("Bob"), await api.signup()
        request_id = (await _ask(alice, bob)).json()["id"]
        path = f"/api/connection-requests/{request_id}"

        # A third user cannot see the request at all; the sender cannot answer it.
        for verb in ("patch", "delete"):
            kwargs: dict[str, Any] = {"json": {"status": "accepted"}} if verb == "patch" else {}
            resp = await getattr(eve.http, verb)(path, **kwargs)
            assert error_code(resp, 404) == "not_found"
        assert error_code(await alice.http.patch(path, json={"status": "accepted"}), 403) == (
            "not_recipient"
        )
        assert error_code(await bob.http.delete(path), 403) == "not_sender"
        invalid = await bob.http.patch(path, json={"status": "pending"})
        assert error_code(invalid, 422) == "validation_failed"
        assert not await _connected(api, alice, bob)

        async with api.events(alice.id) as to_alice, api.events(bob.id) as to_bob:
            accepted = await bob.http.patch(path, json={"status": "accepted"})
            assert accepted.status_code == 200, accepted.text
            alice_events, bob_events = await to_alice.published(), await to_bob.published()
        assert accepted.json()["status"] == "accepted"
        assert kinds(alice_events) == [
            ("deliver", "connection-accepted", None),
            ("connection-changed", None, bob.id),
        ]
        assert alice_events[0]["event"]["data"]["id"] == request_id
        assert kinds(bob_events) == [("connection-changed", None, alice.id)]
        assert await _connected(api, alice, bob)
        assert error_code(await bob.http.patch(path, json={"status": "rejected"}), 409) == (
            "not_pending"
        )

        # Withdrawal: sender only, pending only.
        second = (await _ask(eve, bob)).json()["id"]
        withdrawn = await eve.http.delete(f"/api/connection-requests/{second}")
        assert withdrawn.status_code == 200
        assert withdrawn.json()["status"] == "withdrawn"
        again = await eve.http.delete(f"/api/connection-requests/{second}")
        assert error_code(again, 409) == "not_pending"
        assert (
            error_code(await eve.http.delete("/api/connection-requests/nope"), 404) == "not_found"
        )


async def test_a_rejected_sender_waits_for_the_cooldown(services: Services) -> None:
    settings = make_settings(services, connection_request_cooldown_s=3600)
    async with running_restd(settings) as api:
        alice, bob = await api.signup(), await api.signup()
        request_id = (await _ask(alice, bob)).json()["id"]
        async with api.events(alice.id) as to_alice:
            rejected = await bob.http.patch(
                f"/api/connection-requests/{request_id}", json={"status": "rejected"}
            )
            assert rejected.json()["status"] == "rejected"
            assert await to_alice.published() == []  # a rejection is not pushed
        retry = await _ask(alice, bob)
        assert error_code(retry, 409) == "cooldown"
        assert 0 < retry.json()["error"]["details"]["retryAfterSeconds"] <= 3600
        # The one who said no may still ask.
        assert (await _ask(bob, alice)).status_code == 201


async def test_the_daily_request_budget(services: Services) -> None:
    settings = make_settings(services, connection_requests_per_day_free=2)
    async with running_restd(settings) as api:
        alice = await api.signup()
        others = [await api.signup() for _ in range(3)]
        assert (await _ask(alice, others[0])).status_code == 201
        assert (await _ask(alice, others[1])).status_code == 201
        over = await _ask(alice, others[2])
        assert error_code(over, 429) == "daily_request_budget"
        assert int(over.headers["Retry-After"]) >= 1
        # A refused rule does not spend budget: others may still ask Alice.
        assert (await _ask(others[2], alice)).status_code == 201


async def test_connections_are_listed_and_removed(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob, carol = await api.signup("Alice"), await api.signup("Bob"), await api.signup()
        await api.connect(alice, bob)
        await api.connect(carol, alice)
        listed = (await alice.http.get("/api/connections")).json()["items"]
        assert {c["user"]["id"] for c in listed} == {bob.id, carol.id}
        by_bob = next(c for c in listed if c["user"]["id"] == bob.id)
        assert by_bob["user"]["name"] == "Bob"
        assert by_bob["conversationId"] == "-".join(sorted((alice.id, bob.id)))
        assert "email" not in by_bob["user"]

        async with api.events(alice.id) as to_alice, api.events(bob.id) as to_bob:
            removed = await alice.http.delete(f"/api/connections/{bob.id}")
            assert removed.status_code == 204
            alice_events, bob_events = await to_alice.published(), await to_bob.published()
        assert kinds(alice_events) == [("connection-changed", None, bob.id)]
        assert kinds(bob_events) == [("connection-changed", None, alice.id)]
        assert not await _connected(api, alice, bob)
        assert [
            c["user"]["id"] for c in (await bob.http.get("/api/connections")).json()["items"]
        ] == []
        again = await alice.http.delete(f"/api/connections/{bob.id}")
        assert error_code(again, 404) == "not_connected"
        # Removed pairs may connect again.
        await api.connect(bob, alice)
        assert await _connected(api, alice, bob)


async def test_blocking_ends_the_connection_and_refuses_requests(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob = await api.signup("Alice"), await api.signup("Bob")
        await api.connect(alice, bob)
        async with api.events(bob.id) as to_bob:
            assert (await alice.http.post(f"/api/users/{bob.id}/block")).status_code == 204
            assert kinds(await to_bob.published()) == [("connection-changed", None, alice.id)]
        assert not await _connected(api, alice, bob)
        assert (
            await alice.http.post(f"/api/users/{bob.id}/block")
        ).status_code == 204  # idempotent

        assert error_code(await _ask(alice, bob), 409) == "blocked"
        # To Bob, Alice now looks like no one at all.
        assert error_code(await _ask(bob, alice), 404) == "not_found"
        assert (await bob.http.get(f"/api/users/{alice.id}")).status_code == 404
        assert error_code(await alice.http.post(f"/api/users/{alice.id}/block"), 409) == (
            "self_block"
        )
        assert (
            await alice.http.post("/api/users/0123456789abcdef01234567/block")
        ).status_code == 404

        # A pending request ends with the block as well.
        carol = await api.signup()
        pending = (await _ask(carol, alice)).json()["id"]
        assert (await alice.http.post(f"/api/users/{carol.id}/block")).status_code == 204
        incoming = (await alice.http.get("/api/connection-requests")).json()["items"]
        assert [(r["id"], r["status"]) for r in incoming] == [(pending, "removed")]

        assert (await alice.http.delete(f"/api/users/{bob.id}/block")).status_code == 204
        assert error_code(await alice.http.delete(f"/api/users/{bob.id}/block"), 404) == (
            "not_blocked"
        )
        assert (await _ask(bob, alice)).status_code == 201

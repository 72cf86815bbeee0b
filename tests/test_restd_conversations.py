"""Conversations and history over real HTTP: only the two participants read them."""

from __future__ import annotations

from core.ids import conversation_id
from tests.harness import Services, make_settings
from tests.restd_harness import running_restd


async def test_conversations_show_last_message_and_unread_most_recent_first(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob, carol = (
            await api.signup("Alice"),
            await api.signup("Bob"),
            await api.signup("Carol"),
        )
        await api.connect(alice, bob)
        await api.connect(alice, carol)
        await api.connect(bob, carol)  # connected, but no messages: not listed

        await api.insert_message(bob, alice, "hi alice")
        await api.insert_message(alice, bob, "hi bob")
        await api.insert_message(carol, alice, "ping", status="read")
        await api.insert_message(carol, alice, "ping again")
        last = await api.insert_message(carol, alice, "are you there?")

        resp = await alice.http.get("/api/conversations")
        assert resp.status_code == 200, resp.text
        items = resp.json()["items"]
        assert [(c["user"]["name"], c["lastMessage"]["text"], c["unreadCount"]) for c in items] == [
            ("Carol", "are you there?", 2),
            ("Bob", "hi bob", 1),
        ]
        assert items[0]["id"] == conversation_id(alice.id, carol.id)
        assert items[0]["lastMessage"]["id"] == last
        assert "email" not in items[0]["user"]
        assert {"inKey", "outKey", "dedupKey"}.isdisjoint(items[0]["lastMessage"])

        bobs = (await bob.http.get("/api/conversations")).json()["items"]
        assert [(c["user"]["name"], c["unreadCount"]) for c in bobs] == [("Alice", 1)]


async def test_history_pages_newest_first_and_only_participants_may_read_it(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        alice, bob, eve = await api.signup(), await api.signup(), await api.signup()
        await api.connect(alice, bob)
        sent = [await api.insert_message(alice, bob, f"m{n}") for n in range(5)]
        conv = conversation_id(alice.id, bob.id)
        path = f"/api/conversations/{conv}/messages"

        texts: list[str] = []
        ids: list[str] = []
        cursor = None
        for _ in range(5):
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["before"] = cursor
            page = await bob.http.get(path, params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            texts += [m["text"] for m in body["messages"]]
            ids += [m["id"] for m in body["messages"]]
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert texts == ["m4", "m3", "m2", "m1", "m0"]
        assert ids == sent[::-1]
        default = (await alice.http.get(path)).json()
        assert len(default["messages"]) == 5
        assert default["nextCursor"] is None

        # Anyone else: 404, exactly as for a conversation that does not exist.
        outsider = await eve.http.get(path)
        nonexistent = await eve.http.get(
            "/api/conversations/0123456789abcdef01234567-fedcba9876543210fedcba98/messages"
        )
        assert outsider.status_code == nonexistent.status_code == 404
        assert outsider.json() == nonexistent.json()
        high, low = sorted((alice.id, bob.id), reverse=True)
        assert (await bob.http.get(f"/api/conversations/{high}-{low}/messages")).status_code == 404
        assert (await bob.http.get("/api/conversations/garbage/messages")).status_code == 404

        for params in ({"limit": 0}, {"limit": 101}, {"before": "not-a-cursor"}):
            bad = await bob.http.get(path, params=params)
            assert bad.status_code == 422, (params, bad.text)
            assert bad.json()["error"]["details"][0]["field"] == next(iter(params))
        assert (await api.client().get(path)).status_code == 401

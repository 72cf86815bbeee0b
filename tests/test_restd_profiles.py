"""Profiles and search over real HTTP: normalized edits, public views, text search."""

from __future__ import annotations

from typing import Any

from tests.harness import Services, make_settings
from tests.restd_harness import Api, User, running_restd

PRIVATE_FIELDS = {"email", "passwordHash", "prefs"}


async def _search(user: User, **params: Any) -> dict[str, Any]:
    resp = await user.http.get("/api/users/search", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _names(page: dict[str, Any]) -> list[str]:
    return [item["name"] for item in page["items"]]


async def test_profile_edit_normalizes_skills_and_refuses_out_of_bounds_values(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        user = await api.signup()
        resp = await user.http.patch(
            "/api/users/me",
            json={
                "name": "  Grace Hopper ",
                "headline": "Compilers",
                "skills": [" Python ", "PYTHON", "Rust   Lang", "", "Straße"],
                "location": "New York",
                "bio": "Wrote the first compiler",
                "avatarUrl": "https://cdn.example/g.png",
                "links": ["https://example.org/grace"],
                "prefs": {"theme": "dark", "emails": False},
            },
        )
        assert resp.status_code == 200, resp.text
        me = resp.json()
        assert me["name"] == "Grace Hopper"
        assert me["skills"] == ["python", "rust lang", "strasse"]
        assert me["prefs"] == {"theme": "dark", "emails": False}
        assert me["avatarUrl"] == "https://cdn.example/g.png"

        # Only the fields sent change; null clears a clearable field.
        cleared = await user.http.patch("/api/users/me", json={"headline": None})
        assert cleared.json()["headline"] == ""

        # Prefs merge: one pref sent leaves the others as they were; null removes one.
        merged = await user.http.patch("/api/users/me", json={"prefs": {"theme": "light"}})
        assert merged.json()["prefs"] == {"theme": "light", "emails": False}
        removed = await user.http.patch("/api/users/me", json={"prefs": {"theme": None}})
        assert removed.json()["prefs"] == {"emails": False}
        assert cleared.json()["skills"] == ["python", "rust lang", "strasse"]

        refused = [
            ("skills", {"skills": [f"s{n}" for n in range(31)]}),
            ("skills", {"skills": ["x" * 41]}),
            ("avatarUrl", {"avatarUrl": "javascript:alert(1)"}),
            ("name", {"name": None}),
            ("email", {"email": "new@example.com"}),  # not editable here
            ("links", {"links": [f"https://e.org/{n}" for n in range(11)]}),
            ("prefs.$where", {"prefs": {"$where": 1}}),
            ("prefs.theme", {"prefs": {"theme": "x" * 201}}),
            ("prefs.nested", {"prefs": {"nested": {"a": 1}}}),
        ]
        for field, body in refused:
            bad = await user.http.patch("/api/users/me", json=body)
            assert bad.status_code == 422, (field, bad.text)
            fields = [d["field"] for d in bad.json()["error"]["details"]]
            assert field in fields, (field, fields)
        assert (await user.http.get("/api/users/me")).json()["name"] == "Grace Hopper"


async def test_public_view_never_shows_private_fields_and_others_cannot_edit_it(
    services: Services,
) -> None:
    async with running_restd(make_settings(services)) as api:
        alice = await api.signup("Alice")
        bob = await api.signup("Bob")
        seen = await bob.http.get(f"/api/users/{alice.id}")
        assert seen.status_code == 200
        assert seen.json()["name"] == "Alice"
        assert not PRIVATE_FIELDS & set(seen.json())

        # There is no way to edit another user's profile.
        attempt = await bob.http.patch(f"/api/users/{alice.id}", json={"name": "Mallory"})
        assert attempt.status_code == 405
        assert attempt.json()["error"]["code"] == "method_not_allowed"
        own = await bob.http.patch("/api/users/me", json={"name": "Bobby"})
        assert own.json()["id"] == bob.id
        assert (await alice.http.get("/api/users/me")).json()["name"] == "Alice"

        missing = await bob.http.get("/api/users/0123456789abcdef01234567")
        assert missing.status_code == 404
        assert (await bob.http.get("/api/users/not-an-id")).status_code == 404


async def _profile(user: User, **fields: Any) -> None:
    resp = await user.http.patch("/api/users/me", json=fields)
    assert resp.status_code == 200, resp.text


async def _people(api: Api) -> tuple[User, User, User, User]:
    ada = await api.signup("Ada")
    linus = await api.signup("Linus")
    grace = await api.signup("Grace")
    seeker = await api.signup("Seeker")
    await _profile(ada, skills=["Python", "Math"], bio="analytical engines", location="London")
    await _profile(linus, skills=["C", "python"], bio="kernels", location="Portland")
    await _profile(grace, skills=["COBOL"], bio="compilers", location="New York")
    return ada, linus, grace, seeker


async def test_search_by_text_skill_and_location_with_cursor_pages(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        *_, seeker = await _people(api)

        assert _names(await _search(seeker, q="kernels")) == ["Linus"]
        assert _names(await _search(seeker, q="grace")) == ["Grace"]
        assert _names(await _search(seeker, skill=" PYTHON ")) == ["Ada", "Linus"]
        assert _names(await _search(seeker, location="new")) == ["Grace"]
        assert _names(await _search(seeker, skill="python", location="port")) == ["Linus"]
        assert _names(await _search(seeker, q="python", skill="c")) == ["Linus"]
        assert _names(await _search(seeker, q='"(* -')) == ["Ada", "Linus", "Grace"]  # no words
        for item in (await _search(seeker))["items"]:
            assert not PRIVATE_FIELDS & set(item)

        # Everyone but the searcher, one per page, each exactly once.
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = await _search(seeker, limit=1, **({"cursor": cursor} if cursor else {}))
            seen += _names(page)
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == ["Ada", "Linus", "Grace"]

        bad = await seeker.http.get("/api/users/search", params={"limit": 0, "cursor": "zz"})
        assert bad.status_code == 422
        fields = {d["field"] for d in bad.json()["error"]["details"]}
        assert fields == {"limit", "cursor"}


async def test_search_hides_blocked_users_both_ways(services: Services) -> None:
    async with running_restd(make_settings(services)) as api:
        ada, linus, grace, seeker = await _people(api)
        assert (await seeker.http.post(f"/api/users/{ada.id}/block")).status_code == 204
        assert (await grace.http.post(f"/api/users/{seeker.id}/block")).status_code == 204
        assert _names(await _search(seeker)) == ["Linus"]
        assert "Seeker" not in _names(await _search(grace))
        # Whoever blocked me reads as absent.
        assert (await seeker.http.get(f"/api/users/{grace.id}")).status_code == 404
        assert (await linus.http.get(f"/api/users/{grace.id}")).status_code == 200

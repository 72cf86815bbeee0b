"""`devconnect demo` as a user runs it (a real subprocess against real Mongo and Redis),
then checked through the REST API: what a demo login sees, and that a second run
and `--reset` never duplicate anything."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from core.embedded import ProcessRecord
from core.mongo import CONNECTION_REQUESTS, CONVERSATIONS, MESSAGES, PAYMENTS, USERS
from core.settings import Settings
from tests.harness import ROOT, Services, make_settings, settings_env
from tests.restd_harness import Api, running_restd
from tooling import demo

LOGIN = re.compile(r"^\s+(\S+@" + re.escape(demo.DEMO_DOMAIN) + r")\s+/\s+(\S+)\s", re.M)
DEMO_TIMEOUT_S = 120


async def _demo(settings: Settings, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "demo",
        *args,
        cwd=ROOT,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEMO_TIMEOUT_S)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _counts(api: Api) -> dict[str, int]:
    db = api.stores.db
    return {
        name: await db[name].count_documents({})
        for name in (USERS, CONNECTION_REQUESTS, MESSAGES, CONVERSATIONS, PAYMENTS)
    }


async def _sign_in(api: Api, email: str, password: str) -> Any:
    resp = await api.client().post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return api.client(Authorization=f"Bearer {resp.json()['accessToken']}")


async def test_demo_seeds_a_world_a_login_can_explore_and_never_twice(services: Services) -> None:
    settings = make_settings(services, public_web_url="http://127.0.0.1:5173")
    async with running_restd(settings) as api:
        out = await _demo(settings)
        assert "demo: seeded 200 developers" in out, out
        assert "http://127.0.0.1:5173/" in out
        logins = LOGIN.findall(out)
        assert len(logins) == 2, out
        seeded = await _counts(api)
        assert seeded[USERS] == 200
        assert seeded[CONNECTION_REQUESTS] >= 300  # a few hundred, plus the pending
        assert seeded[PAYMENTS] == 1

        (pro_email, password), (other_email, _) = logins
        ada = await _sign_in(api, pro_email, password)
        me = (await ada.get("/api/me")).json()
        assert me["membership"]["active"] is True and me["badges"] == ["pro"]
        profile = (await ada.get(f"/api/users/{me['id']}")).json()
        assert profile["badges"] == ["pro"] and profile["skills"] and profile["bio"]

        feed = await ada.get("/api/feed", params={"limit": 10})
        assert feed.status_code == 200, feed.text
        assert len(feed.json()["items"]) == 10
        connections = (await ada.get("/api/connections")).json()["items"]
        assert len(connections) >= 8
        conversations = (await ada.get("/api/conversations")).json()["items"]
        unread = [c for c in conversations if c["unreadCount"] > 0]
        assert len(unread) >= 2 and len(conversations) > len(unread)
        history = await ada.get(f"/api/conversations/{unread[0]['id']}/messages")
        assert len(history.json()["messages"]) >= 3
        incoming = await ada.get(
            "/api/connection-requests", params={"direction": "incoming", "status": "pending"}
        )
        assert len(incoming.json()["items"]) >= 3

        ben = await _sign_in(api, other_email, password)
        ben_me = (await ben.get("/api/me")).json()
        assert ben_me["membership"] is None and ben_me["badges"] == []
        bens = (await ben.get("/api/connections")).json()["items"]
        assert me["id"] in {c["user"]["id"] for c in bens}  # the two logins can chat

        again = await _demo(settings)
        assert "already seeded" in again and LOGIN.findall(again) == logins
        assert await _counts(api) == seeded

        reset = await _demo(settings, "--reset")
        assert "removed 200 earlier demo accounts" in reset
        assert await _counts(api) == seeded
        again_ada = await _sign_in(api, pro_email, password)
        assert (await again_ada.get("/api/me")).json()["membership"]["active"] is True


def test_demo_refuses_production_before_touching_a_store(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    # Settings as production loads them would need real secrets; the guard reads env only.
    settings = make_settings(services).model_copy(
        update={"env": "production", "mongo_url": "mongodb://127.0.0.1:9", "redis_urls": []}
    )
    assert demo.main(settings, []) == 2
    assert "DEVCONNECT_ENV=production" in capsys.readouterr().err


def test_demo_without_stores_says_how_to_get_them(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(services).model_copy(update={"mongo_url": None, "redis_urls": []})
    assert demo.main(settings, []) == 2
    assert "make run" in capsys.readouterr().err


def test_demo_finds_the_stores_of_the_running_stack(services: Services, tmp_path: Path) -> None:
    """`devconnect up` records its children (with their ports) in var/up.json."""
    running = {p.name: p for p in services.processes if p.name in ("mongo", "redis")}
    if "mongo" not in running:
        pytest.skip("TEST_MONGO_URL: no embedded MongoDB process to find")
    children = [ProcessRecord.of(p.name, p.pid or 0, p.argv).to_json() for p in running.values()]
    (tmp_path / "up.json").write_text(json.dumps({"children": children}))
    settings = make_settings(services, var_dir=tmp_path)
    settings = settings.model_copy(update={"mongo_url": None, "redis_urls": []})
    found = demo.stack_settings(settings)
    assert not isinstance(found, str), found
    assert found.mongo_url == f"mongodb://127.0.0.1:{running['mongo'].port}"
    assert found.redis_urls == [f"redis://127.0.0.1:{running['redis'].port}/0"]
    # A record whose process is gone (same PID, another start time) names nothing.
    for child in children:
        child["startTime"] = int(str(child["startTime"])) + 1
    (tmp_path / "up.json").write_text(json.dumps({"children": children}))
    assert isinstance(demo.stack_settings(settings), str)


def test_the_world_is_the_same_for_the_same_seed() -> None:
    one, two = demo.plan_world(18, 60), demo.plan_world(18, 60)
    assert [(p.name, p.skills, p.location) for p in one.people] == [
        (p.name, p.skills, p.location) for p in two.people
    ]
    assert [c.lines for c in one.chats] == [c.lines for c in two.chats]
    other = demo.plan_world(19, 60)
    assert [p.name for p in other.people] != [p.name for p in one.people]
    assert len({p.email for p in one.people}) == 60

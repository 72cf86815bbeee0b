"""`devconnect up` restarts on its own data: after Ctrl-C, a double Ctrl-C and kill -9.

The launcher tests drive the real thing, ``python -m core.cli up``, as a
subprocess with its own var directory and free ports for everything, and no
Mongo or Redis URL so that it starts its own embedded services. Each test
kills whatever it started by PID (checked against the start time recorded in
var/up.json) on the way out, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pymongo import ASCENDING, AsyncMongoClient

from core.embedded import (
    NX_PID_FILE,
    die_with_parent,
    port_open,
    proc_start_time,
)
from core.mongo import INDEXES, MESSAGES, RETIRED_INDEXES, SCHEMA_INDEXES, USERS, ensure_indexes
from proto.client import ChatClient
from tests.harness import Services, make_settings
from tests.stack_harness import Launcher, assert_gone

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl")


@dataclass
class Data:
    """What one run wrote, to be found again after a restart."""

    alice_email: str
    bob_id: str
    conversation_id: str
    text: str
    order_id: str
    redis_key: str


def populate(stack: Launcher) -> Data:
    return asyncio.run(_populate(stack))


async def _populate(stack: Launcher) -> Data:
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=stack.api, timeout=15) as http:
        users = []
        for name in ("alice", "bob"):
            resp = await http.post(
                "/api/auth/signup",
                json={"name": name, "email": f"{name}-{tag}@example.com", "password": PASSWORD},
            )
            assert resp.status_code == 201, resp.text
            users.append(resp.json())
        alice, bob = users
        as_alice = {"Authorization": f"Bearer {alice['accessToken']}"}
        as_bob = {"Authorization": f"Bearer {bob['accessToken']}"}
        sent = await http.post(
            "/api/connection-requests", json={"toUserId": bob["user"]["id"]}, headers=as_alice
        )
        assert sent.status_code == 201, sent.text
        accepted = await http.patch(
            f"/api/connection-requests/{sent.json()['id']}",
            json={"status": "accepted"},
            headers=as_bob,
        )
        assert accepted.status_code == 200, accepted.text

        chat = await ChatClient.connect(
            f"ws://127.0.0.1:{stack.ports['chatd']}/ws", alice["accessToken"]
        )
        try:
            text = f"see you after the restart {tag}"
            temp_id = await chat.private_message(bob["user"]["id"], text)
            ack = await chat.wait_for(
                "message-delivered", lambda d: d["tempId"] == temp_id, timeout=15
            )
        finally:
            await chat.close()

        order = await http.post(
            "/api/payments/create", json={"plan": "pro-monthly"}, headers=as_alice
        )
        assert order.status_code == 201, order.text
    # Redis's own data (appendonly under var/redis), beside Mongo's.
    key = f"test:survives:{tag}"
    with redis.Redis(port=stack.redis_port(), socket_timeout=10) as r:
        r.set(key, tag)
    return Data(
        alice["user"]["email"],
        bob["user"]["id"],
        ack["conversationId"],
        text,
        order.json()["orderId"],
        key,
    )


def verify(stack: Launcher, data: Data) -> None:
    with httpx.Client(base_url=stack.api, timeout=15) as http:
        login = http.post("/api/auth/login", json={"email": data.alice_email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        connections = http.get("/api/connections", headers=auth)
        assert connections.status_code == 200, connections.text
        assert [c["user"]["id"] for c in connections.json()["items"]] == [data.bob_id]
        history = http.get(f"/api/conversations/{data.conversation_id}/messages", headers=auth)
        assert history.status_code == 200, history.text
        assert [m["text"] for m in history.json()["messages"]] == [data.text]
        order = http.get(f"/api/payments/{data.order_id}", headers=auth)
        assert order.status_code == 200, order.text
        assert order.json()["orderId"] == data.order_id
    with redis.Redis(port=stack.redis_port(), socket_timeout=10) as r:
        assert r.get(data.redis_key) is not None


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.1)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    stack = Launcher.create(tmp_path)
    try:
        yield stack
    finally:
        stack.cleanup()


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is none of the stack's, to hand out as a "reused" PID."""
    proc = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_parent())
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.timeout(180)
def test_ctrl_c_then_restart_keeps_all_data(launcher: Launcher) -> None:
    launcher.start()
    data = populate(launcher)
    verify(launcher, data)
    launcher.stop()

    launcher.start()
    verify(launcher, data)
    # The second start found the indexes and created none.
    assert re.search(r"migrate: 0 created", launcher.output()), launcher.tail()
    launcher.stop()


@pytest.mark.timeout(180)
def test_double_ctrl_c_stops_everything_and_the_next_start_has_the_data(
    launcher: Launcher,
) -> None:
    launcher.start()
    data = populate(launcher)
    records = launcher.recorded()

    launcher.signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping" in launcher.up_lines(), 10, "the stop")
    launcher.signal(signal.SIGINT)  # while it is stopping
    assert launcher.wait_exit() == 0, launcher.tail()
    assert "signal again" in launcher.up_lines(), launcher.tail()
    assert_gone(records)
    assert not port_open(launcher.ports["smtp"])
    assert not (launcher.var / "up.pid").exists()

    launcher.start()
    verify(launcher, data)
    launcher.stop()


@pytest.mark.timeout(180)
def test_kill_9_of_everything_then_restart_keeps_all_data(
    launcher: Launcher, stranger: subprocess.Popen[bytes]
) -> None:
    launcher.start()
    data = populate(launcher)
    records = launcher.recorded()
    assert launcher.proc is not None
    up_pid = launcher.proc.pid

    sessions: dict[int, int] = {}
    for record in records:
        sessions.update(record.session())
    for pid in sessions:  # the children (and what they forked) first, then `up`
        os.kill(pid, signal.SIGKILL)
    launcher.signal(signal.SIGKILL)
    launcher.proc.wait(10)
    wait_until(lambda: all(proc_start_time(p) != s for p, s in sessions.items()), 15, "the kill -9")
    mongo_pid_file = launcher.var / "mongo" / NX_PID_FILE
    assert mongo_pid_file.exists()  # nx-27017 had no chance to remove it

    # Everything left behind now names a live process that is not ours, as happens
    # when PIDs are reused: none of it may be killed, and none may stop the start.
    mongo_pid_file.write_text(f"{stranger.pid}\n")
    assert (launcher.var / "up.pid").read_text().strip() == str(up_pid)
    (launcher.var / "up.pid").write_text(f"{stranger.pid}\n")
    state = json.loads((launcher.var / "up.json").read_text())
    state["children"][0]["pid"] = stranger.pid
    (launcher.var / "up.json").write_text(json.dumps(state))

    launcher.start()
    assert stranger.poll() is None, "a process that only reused a recorded PID was killed"
    assert "stale lock" in launcher.up_lines()
    assert "earlier run" not in launcher.up_lines()  # nothing of the earlier run was alive
    verify(launcher, data)
    launcher.stop()


@pytest.mark.timeout(180)
def test_kill_9_of_up_alone_leaves_no_orphans(launcher: Launcher) -> None:
    launcher.start()
    data = populate(launcher)
    records = launcher.recorded()
    # A stopped child that handles SIGTERM (the simulator does) keeps its
    # parent-death signal pending: the next start must find it through up.json and
    # reclaim it. (One without a handler would die of it even while stopped.)
    simulator = next(r for r in records if r.name == "simulator")
    os.kill(simulator.pid, signal.SIGSTOP)

    launcher.signal(signal.SIGKILL)
    assert launcher.proc is not None
    launcher.proc.wait(10)
    others = [r for r in records if r.name != "simulator"]
    # PR_SET_PDEATHSIG: every other child got SIGTERM when `up` died, and stops.
    wait_until(lambda: all(not r.session() for r in others), 45, "the orphans' exit")
    assert simulator.is_alive()

    launcher.start()
    lines = launcher.up_lines()
    assert "of an earlier run still running" in lines, lines
    assert f"simulator (pid {simulator.pid})" in lines, lines
    assert not simulator.is_alive()
    verify(launcher, data)
    launcher.stop()


async def test_ensure_indexes_twice_on_a_populated_database(services: Services) -> None:
    settings = make_settings(services)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(services.mongo_url)
    db = client[settings.mongo_db]
    try:
        first = await ensure_indexes(db)
        assert first == {
            name: [model.document["name"] for model in models] for name, models in INDEXES.items()
        }
        await db[USERS].insert_one(
            {"email": "ada@example.com", "name": "Ada", "skills": ["rust"], "bio": "rustacean"}
        )
        assert await ensure_indexes(db) == {name: [] for name in INDEXES}

        # A database indexed before our record existed (the old `migrate`): the text
        # index is there but unlisted on nx-27017, and documents exist.
        await db[SCHEMA_INDEXES].drop()
        third = await ensure_indexes(db)
        assert "profile_text" not in third[USERS]
        assert await ensure_indexes(db) == {name: [] for name in INDEXES}
        found = await db[USERS].find_one({"$text": {"$search": "rustacean"}})
        assert found is not None and found["email"] == "ada@example.com"
    finally:
        await client.drop_database(settings.mongo_db)
        await client.close()


def test_indexes_as_mongodb_lists_them_count_as_present() -> None:
    """MongoDB lists text indexes as _fts/_ftsx and keeps directions, unlike nx-27017."""
    from core.mongo import _KeySpec, _present

    for models in INDEXES.values():
        for model in models:
            doc = model.document
            want = _KeySpec.of(doc["key"], doc.get("unique", False))
            fields = list(doc["key"].items())
            if want.text:
                # A text index: {_fts: "text", _ftsx: 1}, its fields in weights.
                listed = {"_fts": "text", "_ftsx": 1}
                weights = {field: 1 for field, _ in fields}
                spec = _KeySpec.of(listed, False, weights)
            else:
                # Directions kept, sometimes as doubles.
                spec = _KeySpec.of({f: float(d) for f, d in fields}, doc.get("unique", False))
            assert _present(want, [spec], set()), doc
            if not want.text and any(d == -1 for _, d in fields):
                # The same fields ascending are another index on MongoDB.
                ascending = _KeySpec.of({f: 1 for f, _ in fields}, doc.get("unique", False))
                assert not _present(want, [ascending], set()), doc
                assert _present(want, [ascending], {want}), doc  # nx-27017, once recorded


async def test_an_index_an_earlier_release_made_is_retired(services: Services) -> None:
    """Yesterday's messages collection carries an index no query uses: the next ensure
    drops it (every index costs every insert) and keeps the messages."""
    settings = make_settings(services)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(services.mongo_url)
    db = client[settings.mongo_db]
    try:
        messages = db[MESSAGES]
        await ensure_indexes(db)
        retired = [(field, ASCENDING) for field in RETIRED_INDEXES[MESSAGES][0]]
        await messages.create_index(retired, name="from_to")
        await messages.insert_one({"conversationId": "a_b", "fromUserId": "a", "toUserId": "b"})
        keys = [tuple(ix["key"]) async for ix in await messages.list_indexes()]
        assert RETIRED_INDEXES[MESSAGES][0] in keys
        assert await ensure_indexes(db) == {name: [] for name in INDEXES}
        keys = [tuple(ix["key"]) async for ix in await messages.list_indexes()]
        assert RETIRED_INDEXES[MESSAGES][0] not in keys, keys
        assert len(keys) == len(INDEXES[MESSAGES]) + 1  # and _id's
        assert await messages.count_documents({}) == 1
    finally:
        await client.drop_database(settings.mongo_db)
        await client.close()

"""DevConnect load test: REST users and chat users, in Locust's own user classes.

Run against a running stack (``make run``)::

    PYTHONPATH=. locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \\
        --chat-url ws://127.0.0.1:8081/ws

or bounded and headless with ``make loadtest`` (see loadtest/README.md).

``ApiUser`` signs up, then reads its profile, the feed, search, its
conversations and their history, and sends and answers connection requests
among the users of this run, and starts a payment. Endpoints that a stack
does not serve yet (``/api/feed``, ``/api/payments/create`` answer 404) are
counted once as a success and then skipped by that user.

``ChatPair`` is two accounts connected through the REST request/accept flow,
each holding a websocket to chatd; it sends ``private-message`` both ways and
reports ack and end-to-end latency, typing, read receipts, and a reconnect
followed by ``sync`` as Locust requests of type ``WS`` (loadtest/chatsocket.py).

Every simulated user sends its own ``X-Real-IP``, so per-IP signup and login
limits see many clients, as they would in production, rather than one load
generator. restd honours it only from a trusted proxy: ``make loadtest``
starts the stack with ``DEVCONNECT_TRUSTED_PROXIES=127.0.0.1/32``; against a
stack of your own, set the same.
"""

from __future__ import annotations

import itertools
import random
import secrets
import time
from typing import Any

from locust import HttpUser, between, events, tag, task
from locust.env import Environment
from locust.exception import StopUser

from loadtest.chatsocket import ChatSocket, Pending, new_temp_id

PASSWORD = "load-test-password-1"
RUN_ID = secrets.token_hex(4)
_numbers = itertools.count(1)
DEFAULT_CHAT_URL = "ws://127.0.0.1:8081/ws"
TEXT_PAD = "x" * 80  # ~100-byte messages, as in chatbench


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--chat-url",
        default=DEFAULT_CHAT_URL,
        env_var="LOCUST_CHAT_URL",
        help="chatd websocket URL",
    )


class Directory:
    """The user ids of this Locust process, for picking connection-request targets."""

    def __init__(self) -> None:
        self.user_ids: list[str] = []
        self.absent: set[str] = set()  # endpoints this stack answered 404

    def pick(self, not_me: str) -> str | None:
        others = [u for u in self.user_ids[-500:] if u != not_me]
        return random.choice(others) if others else None


@events.init.add_listener
def _init(environment: Environment, **_kw: Any) -> None:
    environment.devconnect_directory = Directory()  # type: ignore[attr-defined]


def directory(environment: Environment) -> Directory:
    return environment.devconnect_directory  # type: ignore[attr-defined,no-any-return]


def fake_ip() -> str:
    n = next(_numbers)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class Account:
    """One signed-up user: its id, bearer token and the headers its requests carry."""

    def __init__(self, user: HttpUser, label: str) -> None:
        self.user = user
        self.ip = fake_ip()
        self.email = f"{label}-{RUN_ID}-{next(_numbers)}@load.example.com"
        self.user_id = ""
        self.token = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Real-IP": self.ip}

    def signup(self) -> bool:
        body = {"name": f"Load {self.email[:12]}", "email": self.email, "password": PASSWORD}
        data = self._start_session("signup", body, 201)
        if data is None:
            return False
        self.user_id = data["user"]["id"]
        return True

    def login(self) -> bool:
        body = {"email": self.email, "password": PASSWORD}
        return self._start_session("login", body, 200) is not None

    def _start_session(self, route: str, body: dict[str, str], status: int) -> Any:
        """POST ``body`` to ``/api/auth/<route>``; the reply's body (its access token
        kept) when it answers ``status``, else None (reported as a failure)."""
        with self.user.client.post(
            f"/api/auth/{route}", json=body, headers={"X-Real-IP": self.ip}, catch_response=True
        ) as res:
            if res.status_code != status:
                res.failure(f"{route} {res.status_code}: {res.text[:200]}")
                return None
            data = res.json()
        self.token = data["accessToken"]
        # Later requests authenticate by bearer only; a session cookie would add CSRF rules.
        self.user.client.cookies.clear()
        return data

    def get(self, path: str, name: str | None = None, **params: Any) -> Any:
        with self.user.client.get(
            path, headers=self.headers, params=params, name=name or path, catch_response=True
        ) as res:
            if res.status_code != 200:
                res.failure(f"{res.status_code}: {res.text[:200]}")
                return None
            return res.json()

    def optional(self, method: str, path: str, **kw: Any) -> None:
        """A call to an endpoint that may not be served here: one 404/503, then skipped."""
        absent = directory(self.user.environment).absent
        if path in absent:
            return
        with self.user.client.request(
            method, path, headers=self.headers, catch_response=True, **kw
        ) as res:
            # 404: not deployed yet; 503 payments_unavailable: no provider configured
            # (``make run`` has no payment simulator unless one is set up).
            unserved = (res.status_code == 404 and "not_found" in res.text) or (
                res.status_code == 503 and "_unavailable" in res.text
            )
            if unserved and path not in absent:
                absent.add(path)
                res.success()
            elif res.status_code >= 400:
                res.failure(f"{res.status_code}: {res.text[:200]}")

    def request_connection(self, to_user_id: str) -> str | None:
        with self.user.client.post(
            "/api/connection-requests",
            json={"toUserId": to_user_id, "message": "load test"},
            headers=self.headers,
            catch_response=True,
        ) as res:
            # 409: already asked or connected; 403: the daily quota; both are expected here.
            if res.status_code in (403, 409):
                res.success()
                return None
            if res.status_code != 201:
                res.failure(f"{res.status_code}: {res.text[:200]}")
                return None
            return str(res.json()["id"])

    def answer(self, request_id: str, status: str = "accepted") -> bool:
        with self.user.client.patch(
            f"/api/connection-requests/{request_id}",
            json={"status": status},
            headers=self.headers,
            name="/api/connection-requests/{request_id}",
            catch_response=True,
        ) as res:
            if res.status_code == 409:  # answered or withdrawn meanwhile
                res.success()
                return False
            if res.status_code != 200:
                res.failure(f"{res.status_code}: {res.text[:200]}")
                return False
        return True


class ApiUser(HttpUser):
    """A REST client: profile, feed, search, connections, history, payments."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.me = Account(self, "api")
        if not self.me.signup():
            raise StopUser()  # signup or pairing failed: reported above
        directory(self.environment).user_ids.append(self.me.user_id)

    @task(3)
    def read_feed(self) -> None:
        self.me.optional("GET", "/api/feed")

    @task(2)
    def profile(self) -> None:
        self.me.get("/api/users/me")

    @task(1)
    def search(self) -> None:
        self.me.get("/api/users/search", q="load")

    @task(1)
    def ask_to_connect(self) -> None:
        target = directory(self.environment).pick(self.me.user_id)
        if target:
            self.me.request_connection(target)

    @task(2)
    def answer_requests(self) -> None:
        page = self.me.get(
            "/api/connection-requests", direction="incoming", status="pending", limit=5
        )
        for item in (page or {}).get("items", [])[:2]:
            self.me.answer(item["id"], random.choice(("accepted", "accepted", "rejected")))

    @task(2)
    def history(self) -> None:
        conversations = self.me.get("/api/conversations")
        items = (conversations or {}).get("items", [])
        if items:
            conversation = random.choice(items)["id"]
            self.me.get(
                f"/api/conversations/{conversation}/messages",
                name="/api/conversations/{id}/messages",
                limit=50,
            )

    @task(1)
    def relogin(self) -> None:
        self.me.login()

    @task(1)
    @tag("payments")
    def start_payment(self) -> None:
        self.me.optional("POST", "/api/payments/create", json={"plan": "pro-monthly"})


class ChatPair(HttpUser):
    """Two connected accounts, each with a chat socket, talking to each other."""

    weight = 3
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.pending = Pending()
        self.received: dict[str, str] = {}  # user id -> last message id it received
        self.a, self.b = Account(self, "chat"), Account(self, "chat")
        if not (self.a.signup() and self.b.signup() and self._connect_accounts()):
            raise StopUser()  # signup or pairing failed: reported above
        options = self.environment.parsed_options
        url = str(getattr(options, "chat_url", "") or DEFAULT_CHAT_URL)
        self.sockets = {
            acc.user_id: ChatSocket(self.environment, url, acc.token, self._on_frame)
            for acc in (self.a, self.b)
        }
        for sock in self.sockets.values():
            sock.connect()

    def _connect_accounts(self) -> bool:
        request_id = self.a.request_connection(self.b.user_id)
        return request_id is not None and self.b.answer(request_id)

    def on_stop(self) -> None:
        for sock in getattr(self, "sockets", {}).values():
            sock.close()

    # -- frames from either socket -----------------------------------------------------
    def _on_frame(self, sock: ChatSocket, frame: dict[str, Any]) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "message-delivered":
            self._answer(f"ack:{data.get('tempId')}", 200)
        elif kind == "incoming-message":
            temp = str(data.get("text", "")).split("|", 1)[0]
            self._answer(f"e2e:{temp}", len(data.get("text", "")))
            self.received[str(sock.user_id)] = data.get("messageId", "")
        elif kind == "typing":
            self._answer(f"typing:{sock.user_id}:{data.get('fromUserId')}", 0)
        elif kind == "message-read" and data.get("readerId") != sock.user_id:
            self._answer(f"read:{data.get('readerId')}:{data.get('upToMessageId')}", 0)
        elif kind == "error":
            temp = data.get("tempId")
            found = self.pending.pop(f"ack:{temp}") if temp else None
            if found:
                self.pending.pop(f"e2e:{temp}")
                sock.report(found[1], found[0], exc=RuntimeError(f"error {data.get('code')}"))

    def _answer(self, key: str, length: int) -> None:
        found = self.pending.pop(key)
        if found is not None:
            self.sockets_any().report(found[1], found[0], length)

    def sockets_any(self) -> ChatSocket:
        return next(iter(self.sockets.values()))

    def _ensure(self, account: Any) -> ChatSocket:
        sock = self.sockets[account.user_id]
        if not sock.connected:
            sock.connect()
        return sock

    def _expire(self) -> None:
        for key, name, started in self.pending.expired(time.perf_counter()):
            if key.startswith("typing:"):
                continue  # typing is ephemeral: the server may shed it under backpressure
            self.sockets_any().report(name, started, exc=TimeoutError(f"no {name} reply"))

    def _direction(self) -> tuple[Account, Account]:
        return (self.a, self.b) if random.random() < 0.5 else (self.b, self.a)

    # -- tasks -----------------------------------------------------------------------
    @task(10)
    def send_message(self) -> None:
        self._expire()
        sender, recipient = self._direction()
        sock = self._ensure(sender)
        self._ensure(recipient)
        temp = new_temp_id()
        self.pending.add(f"ack:{temp}", "ack")
        self.pending.add(f"e2e:{temp}", "e2e")
        data = {"toUserId": recipient.user_id, "tempId": temp, "text": f"{temp}|{TEXT_PAD}"}
        if not sock.send("private-message", data):
            self.pending.pop(f"ack:{temp}")
            self.pending.pop(f"e2e:{temp}")

    @task(2)
    def type_to_peer(self) -> None:
        sender, recipient = self._direction()
        sock = self._ensure(sender)
        key = f"typing:{recipient.user_id}:{sender.user_id}"
        self.pending.add(key, "typing")
        if not sock.send("typing", {"toUserId": recipient.user_id, "state": "start"}):
            self.pending.pop(key)

    @task(2)
    def mark_read(self) -> None:
        reader, other = self._direction()
        last = self.received.get(reader.user_id)
        if not last:
            return
        sock = self._ensure(reader)
        ids = sorted((reader.user_id, other.user_id))
        key = f"read:{reader.user_id}:{last}"
        self.pending.add(key, "read")
        data = {"conversationId": f"{ids[0]}-{ids[1]}", "upToMessageId": last}
        if not sock.send("message-read", data):
            self.pending.pop(key)

    @task(1)
    def reconnect_and_sync(self) -> None:
        account = random.choice((self.a, self.b))
        sock = self.sockets[account.user_id]
        sock.close()
        if sock.connect():
            sock.sync()

"""A page of another origin, in the same browser as a signed-in user, gets nothing done.

The foreign page is on the same host and another port (127.0.0.1:<other>):
the same *site*, so the browser attaches the user's SameSite=Lax cookies to
its requests and only the servers' Origin checks stand in the way. The
app's own page, for contrast, opens the socket with the same cookies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from playwright.sync_api import BrowserContext, Route

from core.embedded import free_port
from tests.stack_harness import Launcher

PASSWORD = "correct horse battery staple"
OPEN_SOCKET = """url => new Promise(resolve => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 10000);
})"""
POST_JSON = """([url, body]) => fetch(url, {
    method: "POST", credentials: "include",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
}).then(r => "status " + r.status, e => "blocked: " + e.name)"""
POST_SIMPLE = """([url, body]) => fetch(url, {
    method: "POST", credentials: "include", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify(body),
}).then(r => r.type, e => "blocked: " + e.name)"""


def _signup(http: httpx.Client, name: str) -> dict[str, object]:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    resp = http.post("/api/auth/signup", json={"name": name, "email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_a_foreign_origin_is_refused(
    stack: Launcher, new_context: Callable[..., BrowserContext]
) -> None:
    with httpx.Client(base_url=stack.url, timeout=15) as http:
        bob = _signup(http, "bob")
        bob_id = bob["user"]["id"]  # type: ignore[index]
        bob_auth = {"Authorization": f"Bearer {bob['accessToken']}"}

        context = new_context()
        email = f"alice-{uuid.uuid4().hex[:8]}@example.com"
        signed = context.request.post(
            "/api/auth/signup", data={"name": "alice", "email": email, "password": PASSWORD}
        )
        assert signed.status == 201, signed.text()
        assert {c["name"] for c in context.cookies(stack.url)} >= {"access_token"}

        own = context.new_page()
        own.goto("/")
        assert own.evaluate(OPEN_SOCKET, stack.chat_url) == "open"

        foreign_origin = f"http://127.0.0.1:{free_port()}"

        def serve_foreign(route: Route) -> None:
            route.fulfill(status=200, content_type="text/html", body="<title>elsewhere</title>")

        context.route(f"{foreign_origin}/**", serve_foreign)
        foreign = context.new_page()
        foreign.goto(f"{foreign_origin}/page.html")
        target = [f"{stack.url}/api/connection-requests", {"toUserId": bob_id}]

        # The socket: chatd refuses the handshake from an origin it does not know.
        assert foreign.evaluate(OPEN_SOCKET, stack.chat_url) == "refused"
        # A JSON request needs a CORS preflight, which a foreign origin never passes.
        assert foreign.evaluate(POST_JSON, target).startswith("blocked")
        # A "simple" request goes out without one, cookies attached; restd refuses it
        # (403 before reading the body: the page sees an opaque answer or a reset).
        assert foreign.evaluate(POST_SIMPLE, target) in ("opaque", "blocked: TypeError")
        incoming = http.get("/api/connection-requests", headers=bob_auth)
        assert incoming.status_code == 200, incoming.text
        assert incoming.json()["items"] == [], incoming.json()

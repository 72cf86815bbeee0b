"""A session outlives its access token: the open socket renews it, REST refreshes it.

The browser stack issues 40-second access tokens (conftest.ACCESS_TTL_S), so
this waits past the first token's end with both people's pages open, then
chats and reads through REST again, on the same socket the whole time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import ACCESS_TTL_S
from tests.browser.test_web_chat import messages, open_chat, pair, send, wait_online


def test_a_session_outlives_its_access_token(
    new_context: Callable[..., BrowserContext],
) -> None:
    a, b = pair(new_context, "esra", "divya")
    open_chat(a, b)
    open_chat(b, a)
    send(a, "before the token ran out")
    expect(messages(b.page, "before the token ran out")).to_have_count(1)
    opens_before = {p: p.get_attribute("body", "data-chat-opens") for p in (a.page, b.page)}

    time.sleep(ACCESS_TTL_S + 10)  # past the first access token of both

    # The sockets stayed up (renewed in place, never closed for expiry) ...
    for page in (a.page, b.page):
        wait_online(page, timeout=1_000)
        assert page.get_attribute("body", "data-chat-opens") == opens_before[page]
    send(b, "after the token ran out")
    expect(messages(a.page, "after the token ran out")).to_have_count(1)
    send(a, "and back")
    expect(messages(b.page, "and back")).to_have_count(1)
    # ... and REST refreshed its cookie on the way (a page of reads after expiry).
    a.page.goto("/connections")
    expect(a.page.get_by_test_id("connection").filter(has_text=b.name)).to_be_visible()
    expect(a.page).not_to_have_url("/login")

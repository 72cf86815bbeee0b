"""The whole stack restarts under two open browsers: they reconnect and lose nothing.

A stack of its own (the other browser tests share theirs): two people chat,
the stack stops (Ctrl-C, as an operator would) while one of them types a
message, and starts again on the same data and ports. Both pages reconnect
by themselves, the typed message goes out once under its tempId, and every
message shows once on both sides, before and after a reload.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import browser_stack
from tests.browser.test_web_chat import connect, messages, open_chat, send, signup, wait_online
from tests.stack_harness import Launcher

RECONNECT_MS = 60_000  # the app's backoff tops out at 15 s; the stack starts within this


@pytest.fixture
def own_stack(chromium: str) -> Iterator[Launcher]:
    with browser_stack("devconnect-restart-") as launcher:
        yield launcher


@pytest.mark.timeout(300)
def test_both_browsers_ride_out_a_restart_of_the_stack(
    own_stack: Launcher, new_context: Callable[..., BrowserContext]
) -> None:
    a = signup(new_context(base_url=own_stack.url), "Gita Rao", "python", "Pune")
    b = signup(new_context(base_url=own_stack.url), "Hamid Ali", "python", "Pune")
    connect(a, b)
    open_chat(a, b)
    open_chat(b, a)
    send(a, "before the restart")
    expect(messages(b.page, "before the restart")).to_have_count(1)

    own_stack.stop()  # every process, by PID; the data stays in var/
    for page in (a.page, b.page):  # the app says it lost the socket
        expect(page.get_by_test_id("conn-state")).to_contain_text(
            re.compile("Reconnecting|Connecting"), timeout=RECONNECT_MS
        )
    send(b, "typed while the servers were down")
    typed = messages(b.page, "typed while the servers were down")
    expect(typed).not_to_have_attribute("data-state", "sent")
    temp_id = typed.get_attribute("data-temp-id")

    own_stack.start()  # same var, same ports: yesterday's data
    for page in (a.page, b.page):
        wait_online(page, timeout=RECONNECT_MS)
    expect(typed).to_have_attribute("data-id", re.compile(r"^[0-9a-f]{24}$"))
    assert typed.get_attribute("data-temp-id") == temp_id
    expect(messages(a.page, "typed while the servers were down")).to_have_count(1)
    send(a, "after the restart")
    expect(messages(b.page, "after the restart")).to_have_count(1)

    expected = ["before the restart", "typed while the servers were down", "after the restart"]
    for person in (a, b):
        person.page.reload()
        wait_online(person.page)
        expect(messages(person.page)).to_have_count(3)
        texts = messages(person.page).get_by_test_id("message-text").all_text_contents()
        assert texts == expected

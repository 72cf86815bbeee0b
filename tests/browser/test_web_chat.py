"""The web app's chat, driven in two browsers (two contexts: two cookie jars).

Two people sign up in the app, find each other by search, connect (request,
accept: the request appears live on the other side), and chat: live both ways,
history across a reload, no duplicates after one side drops off the network and
comes back (sync from its cursor; its message typed offline goes out on
reconnect under the same tempId), and typing and read states shown to the other.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import BrowserContext, Locator, Page, expect

PASSWORD = "correct horse battery staple"
RUN = uuid.uuid4().hex[:4]

# The stack allows 10 signups an hour from one address (rate_signup_ip_count) and
# every browser here is 127.0.0.1; so these people sign up once per run, through
# the app's form, and sign in (the app's login form) in every later test. Each
# test uses its own pair, so no two tests share a conversation.
PEOPLE = {
    "asha": ("Asha Rao", "python, postgres, kafka", "Pune"),
    "bilal": ("Bilal Khan", "python, rust", "Pune"),
    "chen": ("Chen Wei", "python, kafka", "Pune"),
    "divya": ("Divya Iyer", "go, kafka, python", "Pune"),
    "farid": ("Farid Shaikh", "python, django", "Mumbai"),
    "esra": ("Esra Demir", "rust, kafka", "Pune"),
}
SIGNED_UP: dict[str, tuple[str, str, str]] = {}  # key -> (name, email, id)


@dataclass
class Person:
    context: BrowserContext
    page: Page
    name: str
    id: str = ""


def signup(
    context: BrowserContext, name: str, skills: str = "", location: str = "", email: str = ""
) -> Person:
    """Signs up through the app's own form, then fills in the profile."""
    page = context.new_page()
    page.goto("/signup")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email or f"{uuid.uuid4().hex[:12]}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    expect(page).to_have_url(re.compile(r"/profile"))
    expect(page.get_by_test_id("header-name")).to_have_text(name)
    if skills or location:
        page.get_by_label("Skills").fill(skills)
        page.get_by_label("Location").fill(location)
        page.get_by_test_id("profile-save").click()
        expect(page.get_by_test_id("profile-status")).to_have_text("Saved.")
    wait_online(page)
    me = context.request.get("/api/auth/me")
    assert me.ok, me.text()
    return Person(context, page, name, me.json()["id"])


def sign_in(page: Page, email: str, landing: str = "/feed$", password: str = PASSWORD) -> None:
    """Fill the login form the page shows and wait for ``landing`` and a live socket."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page).to_have_url(re.compile(landing))
    wait_online(page)


def login(context: BrowserContext, email: str, password: str = PASSWORD) -> Page:
    page = context.new_page()
    page.goto("/login")
    sign_in(page, email, password=password)
    return page


def person(new_context: Callable[..., BrowserContext], key: str, **options: object) -> Person:
    """One of PEOPLE in a fresh browser: signed up the first time, signed in after."""
    context = new_context(**options)
    if key not in SIGNED_UP:
        name, skills, location = PEOPLE[key]
        email = f"{key}-{RUN}-{uuid.uuid4().hex[:6]}@example.com"
        new = signup(context, f"{name} {RUN}", skills, location, email)
        SIGNED_UP[key] = (new.name, email, new.id)
        return new
    name, email, user_id = SIGNED_UP[key]
    return Person(context, login(context, email), name, user_id)


def wait_online(page: Page, timeout: float = 20_000) -> None:
    """The chat socket is live (hello received, any sync done)."""
    page.locator("body[data-chat=online]").wait_for(state="attached", timeout=timeout)


def connect(a: Person, b: Person) -> None:
    """A finds B by search and asks to connect; B, on its connections page, sees the
    request arrive live and accepts it."""
    b.page.goto("/connections")
    expect(b.page.get_by_test_id("incoming-list")).to_be_visible()
    expect(b.page.get_by_test_id("incoming-request").filter(has_text=a.name)).to_have_count(0)
    a.page.goto("/feed")
    a.page.get_by_label("Search people").fill(b.name)
    a.page.get_by_test_id("search-submit").click()
    result = a.page.get_by_test_id("search-result").filter(has_text=b.name)
    expect(result).to_have_count(1)
    assert result.get_attribute("data-user-id") == b.id
    result.get_by_role("button", name=f"Connect with {b.name}").click()
    result.get_by_label(f"Note to {b.name} (optional)").fill(f"Hi {b.name}, let's talk shop.")
    result.get_by_role("button", name="Send request").click()
    expect(result.get_by_test_id("request-sent")).to_have_text("Request sent")

    # No reload: the request reaches B's open page through the chat socket.
    request = b.page.get_by_test_id("incoming-request").filter(has_text=a.name)
    expect(request).to_be_visible()
    expect(request.get_by_test_id("request-note")).to_contain_text("let's talk shop")
    expect(b.page.get_by_test_id("nav-requests")).to_be_visible()
    assert request.get_attribute("data-user-id") == a.id
    request.get_by_role("button", name=f"Accept {a.name}").click()
    expect(b.page.get_by_test_id("connection").filter(has_text=a.name)).to_be_visible()
    expect(a.page.get_by_test_id("toast").filter(has_text="accepted your request")).to_be_visible()


def pair(
    new_context: Callable[..., BrowserContext], a_key: str, b_key: str
) -> tuple[Person, Person]:
    a = person(new_context, a_key)
    b = person(new_context, b_key)
    connect(a, b)
    return a, b


def open_chat(me: Person, other: Person) -> None:
    me.page.goto(f"/chat/{other.id}")
    expect(me.page.get_by_test_id("thread-title")).to_have_text(other.name)
    wait_online(me.page)


def send(me: Person, text: str) -> None:
    me.page.get_by_label(re.compile("^Message to ")).fill(text)
    me.page.get_by_label(re.compile("^Message to ")).press("Enter")


def messages(page: Page, text: str | None = None) -> Locator:
    """The open thread's messages; with ``text``, those whose text is exactly that."""
    found = page.get_by_test_id("messages").get_by_test_id("message")
    if text is None:
        return found
    return found.filter(has=page.get_by_test_id("message-text").get_by_text(text, exact=True))


def test_two_people_connect_and_chat_live_both_ways(
    new_context: Callable[..., BrowserContext],
) -> None:
    a, b = pair(new_context, "asha", "bilal")
    open_chat(a, b)
    open_chat(b, a)

    send(a, "Hello from Asha")
    mine = messages(a.page, "Hello from Asha")
    # Acknowledged: the server's id is on the message, and it says Sent (or Read).
    expect(mine).to_have_attribute("data-id", re.compile(r"^[0-9a-f]{24}$"))
    expect(mine).to_have_attribute("data-state", re.compile("^(sent|read)$"))
    theirs = messages(b.page, "Hello from Asha")
    expect(theirs).to_have_count(1)
    expect(theirs).to_have_class(re.compile(r"\btheirs\b"))
    assert theirs.get_attribute("data-id") == mine.get_attribute("data-id")

    send(b, "Hi Asha, Bilal here")
    expect(messages(a.page, "Hi Asha, Bilal here")).to_have_count(1)
    expect(messages(b.page, "Hi Asha, Bilal here")).to_have_attribute(
        "data-state", re.compile("^(sent|read)$")
    )

    # Presence: each sees the other online.
    expect(a.page.get_by_test_id("presence")).to_have_text("Online")
    expect(b.page.get_by_test_id("presence")).to_have_text("Online")

    # A second tab of Asha's gets what she sends from the first, live, as hers.
    tab = a.context.new_page()
    tab.goto(f"/chat/{b.id}")
    wait_online(tab)
    send(a, "Sent from my first tab")
    expect(messages(tab, "Sent from my first tab")).to_have_count(1)
    expect(messages(tab, "Sent from my first tab")).to_have_class(re.compile(r"\bmine\b"))
    expect(messages(b.page, "Sent from my first tab")).to_have_count(1)


def test_a_reload_keeps_the_history(new_context: Callable[..., BrowserContext]) -> None:
    a, b = pair(new_context, "asha", "chen")
    open_chat(a, b)
    lines = [f"history line {i}" for i in range(33)]
    for line in lines:
        send(a, line)
    expect(messages(a.page, lines[-1])).to_have_attribute("data-state", re.compile("^(sent|read)$"))
    b.page.goto("/chat")
    conversation = b.page.get_by_test_id("conversation").filter(has_text=a.name)
    expect(conversation.get_by_test_id("unread-count")).to_have_text("33")
    expect(b.page.get_by_test_id("nav-unread")).to_have_text("33")
    conversation.click()
    # The newest page first; older ones on request (REST, paging backwards).
    expect(messages(b.page)).to_have_count(30)
    b.page.get_by_test_id("load-older").click()
    expect(messages(b.page)).to_have_count(33)
    expect(b.page.get_by_test_id("load-older")).to_be_hidden()
    send(b, "a reply before the reload")
    expect(messages(a.page, "a reply before the reload")).to_have_count(1)

    for person in (a, b):
        person.page.reload()
        expect(messages(person.page)).to_have_count(30)
        person.page.get_by_test_id("load-older").click()
        expect(messages(person.page)).to_have_count(34)
        texts = messages(person.page).get_by_test_id("message-text").all_text_contents()
        assert texts == [*lines, "a reply before the reload"]
    # B has read everything, so after the reload A's messages say Read.
    expect(messages(a.page, "history line 0")).to_have_attribute("data-state", "read")
    expect(messages(a.page, lines[-1])).to_have_attribute("data-state", "read")
    expect(b.page.get_by_test_id("nav-unread")).to_be_hidden()


def test_offline_then_back_shows_every_message_once(
    new_context: Callable[..., BrowserContext],
) -> None:
    a, b = pair(new_context, "bilal", "chen")
    open_chat(a, b)
    open_chat(b, a)
    send(a, "before the drop")
    expect(messages(b.page, "before the drop")).to_have_count(1)

    # B's network goes away: the app drops its socket and says so.
    b.context.set_offline(True)
    expect(b.page.get_by_test_id("conn-state")).to_contain_text("Offline")
    expect(a.page.get_by_test_id("presence")).to_contain_text("Last seen", timeout=20_000)

    for i in range(3):
        send(a, f"while you were away {i}")
    for i in range(3):
        expect(messages(a.page, f"while you were away {i}")).to_have_attribute("data-state", "sent")
    # Typed while offline: queued under a tempId, not lost.
    send(b, "typed while offline")
    queued = messages(b.page, "typed while offline")
    expect(queued).to_have_attribute("data-state", "queued")
    temp_id = queued.get_attribute("data-temp-id")
    assert temp_id
    assert messages(b.page, "while you were away 0").count() == 0

    b.context.set_offline(False)
    wait_online(b.page)
    # The sync brings exactly what was missed, once each, in order.
    for i in range(3):
        expect(messages(b.page, f"while you were away {i}")).to_have_count(1)
    expect(messages(b.page, "before the drop")).to_have_count(1)
    # The queued message went out with the same tempId and got its server id.
    sent = messages(b.page, "typed while offline")
    expect(sent).to_have_count(1)
    expect(sent).to_have_attribute("data-id", re.compile(r"^[0-9a-f]{24}$"))
    assert sent.get_attribute("data-temp-id") == temp_id
    expect(messages(a.page, "typed while offline")).to_have_count(1)
    expect(messages(b.page)).to_have_count(5)
    texts = messages(b.page).get_by_test_id("message-text").all_text_contents()
    assert texts == [
        "before the drop",
        "while you were away 0",
        "while you were away 1",
        "while you were away 2",
        "typed while offline",
    ]
    # A reload agrees with what the live page shows: nothing doubled anywhere.
    b.page.reload()
    expect(messages(b.page)).to_have_count(5)
    expect(messages(a.page)).to_have_count(5)


def test_typing_and_read_states_show_on_the_other_side(
    new_context: Callable[..., BrowserContext],
) -> None:
    a, b = pair(new_context, "asha", "divya")
    open_chat(a, b)
    b.page.goto("/chat")  # B is in the app, but not in this conversation
    wait_online(b.page)

    send(a, "are you there?")
    mine = messages(a.page, "are you there?")
    expect(mine).to_have_attribute("data-state", "sent")
    expect(mine.get_by_test_id("message-meta")).to_contain_text("Sent")
    expect(
        b.page.get_by_test_id("conversation").filter(has_text=a.name).get_by_test_id("unread-count")
    ).to_have_text("1")

    # B opens the conversation: A's message turns Read, live.
    b.page.get_by_test_id("conversation").filter(has_text=a.name).click()
    expect(messages(b.page, "are you there?")).to_have_count(1)
    expect(mine).to_have_attribute("data-state", "read")
    expect(mine.get_by_test_id("message-meta")).to_contain_text("Read")

    # B types: A sees it; B stops (sends): the indicator goes.
    composer = b.page.get_by_label(f"Message to {a.name}")
    composer.press_sequentially("yes, just a sec", delay=20)
    expect(a.page.get_by_test_id("typing")).to_have_text(f"{b.name} is typing…")
    composer.press("Enter")
    expect(messages(a.page, "yes, just a sec")).to_have_count(1)
    expect(a.page.get_by_test_id("typing")).to_have_text("")
    # A has the conversation open, so B's reply is read at once.
    expect(messages(b.page, "yes, just a sec")).to_have_attribute("data-state", "read")

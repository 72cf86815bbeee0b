"""The web app's other screens: membership through the PhonePe simulator's page,
account (profile, email preferences, logging out here and everywhere), and a
screenshot of each main screen on a phone and a desktop, checked on the way for
labelled inputs, no sideways scrolling at 360 px and no CSP violation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from tests.browser.test_web_chat import (
    PASSWORD,
    Person,
    connect,
    messages,
    open_chat,
    person,
    send,
    sign_in,
)
from tests.stack_harness import Launcher

PHONE = {"width": 360, "height": 760}
DESKTOP = {"width": 1280, "height": 800}

# Inputs without a label (or aria-label), and the page's width beyond the viewport.
UNLABELLED = """() => Array.from(document.querySelectorAll("input, textarea, select"))
    .filter(el => el.type !== "hidden" && !(el.labels && el.labels.length))
    .filter(el => !el.getAttribute("aria-label"))
    .map(el => el.outerHTML)"""
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def test_payment_through_the_simulator_ends_with_the_pro_badge(
    new_context: Callable[..., BrowserContext], stack: Launcher
) -> None:
    me = person(new_context, "farid")
    page = me.page
    expect(page.get_by_test_id("app-header").get_by_test_id("pro-badge")).to_be_hidden()
    page.get_by_role("link", name="Membership").click()
    expect(page.get_by_test_id("membership-status")).to_contain_text("free plan")
    plan = page.get_by_test_id("plan").filter(has_text="monthly")
    expect(plan).to_contain_text("₹299.00")
    plan.get_by_role("button", name=re.compile("^Pay for")).click()

    # The simulator's page (its own origin); leave the order pending first.
    simulator = stack.simulator_url
    expect(page).to_have_url(re.compile("^" + re.escape(simulator)))
    pay_url = page.url
    page.get_by_role("button", name="Leave pending").click()
    expect(page).to_have_url(re.compile(r"/payments/DC[0-9a-f]{24}$"))
    status = page.get_by_test_id("payment-status")
    expect(status).to_have_text("PENDING")
    expect(page.get_by_test_id("payment")).to_contain_text("updates by itself")

    # Paid in another tab: this one, polling, turns COMPLETED without a reload.
    other = me.context.new_page()
    other.goto(pay_url)
    other.get_by_role("button", name="Pay", exact=True).click()
    expect(other.get_by_test_id("payment-status")).to_have_text("COMPLETED")
    expect(status).to_have_text("COMPLETED", timeout=20_000)
    expect(page.get_by_test_id("payment-done")).to_contain_text("Pro member")
    expect(page.get_by_test_id("payment").get_by_test_id("pro-badge")).to_be_visible()
    expect(page.get_by_test_id("app-header").get_by_test_id("pro-badge")).to_be_visible()

    page.get_by_role("link", name="Profile").click()
    expect(page.get_by_test_id("profile-card").get_by_test_id("pro-badge")).to_be_visible()
    page.get_by_role("link", name="Membership").click()
    expect(page.get_by_test_id("membership-status")).to_contain_text("You are a Pro member")


def test_profile_prefs_and_logging_out(new_context: Callable[..., BrowserContext]) -> None:
    suffix = uuid.uuid4().hex[:6]
    email = f"prefs-{suffix}@example.com"
    context = new_context()
    page = context.new_page()
    page.goto("/signup")
    page.get_by_label("Name").fill(f"Priya {suffix}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    expect(page).to_have_url(re.compile("/profile"))

    page.get_by_label("Headline").fill("Backend engineer")
    page.get_by_label("Location").fill("Bengaluru")
    page.get_by_label("Skills").fill("Go,  Kubernetes, go")
    page.get_by_label("Bio").fill("<b>not bold</b> & plain text")
    page.get_by_label("Links").fill("https://github.com/priya\njavascript:alert(1)")
    page.get_by_test_id("profile-save").click()
    # The server refuses a link that is not http(s); the form says which field.
    expect(page.get_by_test_id("profile-status")).to_contain_text("links")
    page.get_by_label("Links").fill("https://github.com/priya")
    page.get_by_test_id("profile-save").click()
    expect(page.get_by_test_id("profile-status")).to_have_text("Saved.")
    card = page.get_by_test_id("profile-card")
    expect(card.get_by_test_id("profile-skills")).to_have_text(re.compile("go.*kubernetes"))
    # User text is text: the markup shows as typed, nothing is parsed.
    expect(card.get_by_test_id("profile-bio")).to_have_text("<b>not bold</b> & plain text")
    assert card.locator("b").count() == 0
    page.reload()
    expect(page.get_by_label("Headline")).to_have_value("Backend engineer")

    page.get_by_role("link", name="Settings").click()
    box = page.get_by_label("Connections")
    expect(box).to_be_checked()
    box.uncheck()
    page.get_by_test_id("prefs-save").click()
    expect(page.get_by_test_id("prefs-status")).to_have_text("Preferences saved.")
    page.reload()
    expect(page.get_by_label("Connections")).not_to_be_checked()
    expect(page.get_by_label("Messages")).to_be_checked()

    # Log out, and back in.
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(re.compile("/login"))
    page.goto("/chat")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fchat"))
    sign_in(page, email, "/chat$")

    # Log out everywhere: another browser's session ends too, its socket closed.
    elsewhere = new_context().new_page()
    elsewhere.goto("/login")
    sign_in(elsewhere, email)
    page.get_by_role("link", name="Settings").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("logout-everywhere").click()
    expect(page).to_have_url(re.compile("/login"))
    expect(elsewhere).to_have_url(re.compile("/login"), timeout=20_000)
    expect(elsewhere.get_by_test_id("toast").first).to_contain_text("session ended")


def check_screen(page: Page, errors: list[str], phone: bool) -> None:
    assert page.evaluate(UNLABELLED) == [], page.url
    if phone:
        assert page.evaluate(OVERFLOW) <= 0, f"{page.url} scrolls sideways at 360 px"
    assert errors == [], errors


def connected(a: Person, b: Person) -> bool:
    found = a.context.request.get("/api/connections").json()["items"]
    return any(item["user"]["id"] == b.id for item in found)


def test_screenshots_of_each_main_screen(
    new_context: Callable[..., BrowserContext],
    screenshot: Callable[[Page, str], Path],
) -> None:
    a = person(new_context, "asha", viewport=DESKTOP)
    b = person(new_context, "bilal", viewport=DESKTOP)
    if not connected(a, b):
        connect(a, b)
    # A request left pending, so the connections screen shows one.
    c = person(new_context, "farid", viewport=DESKTOP)
    if not connected(c, a):
        c.page.goto("/feed")
        c.page.get_by_label("Search people").fill(a.name)
        c.page.get_by_test_id("search-submit").click()
        found = c.page.get_by_test_id("search-results")
        found.get_by_role("button", name=f"Connect with {a.name}").click()
        found.get_by_role("button", name="Send request").click()
        expect(found.get_by_test_id("request-sent")).to_be_visible()
    open_chat(a, b)
    open_chat(b, a)
    send(b, "Saw your Kafka talk: great stuff.")
    send(a, "Thanks! Are you going to PyCon India?")
    send(b, "Yes, see you there.")
    expect(messages(a.page, "Yes, see you there.")).to_have_count(1)

    for viewport, variant in ((DESKTOP, "desktop"), (PHONE, "phone")):
        phone = variant == "phone"
        errors: list[str] = []

        def as_(
            who: Person, errors: list[str] = errors, viewport: dict[str, int] = viewport
        ) -> Page:
            """A page signed in as ``who`` (their cookies), in a browser of this size."""
            context = new_context(viewport=viewport)
            cookies: Any = who.context.cookies()  # Cookie and SetCookieParam: same keys
            context.add_cookies(cookies)
            page = context.new_page()

            def on_console(msg: ConsoleMessage) -> None:
                # 401s are the app asking whether a session exists; anything else counts.
                if "Content Security Policy" in msg.text or (
                    msg.type == "error" and "401" not in msg.text
                ):
                    errors.append(msg.text)

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            return page

        # The feed of someone with people left to meet (Asha knows everyone here).
        page = as_(c)
        page.goto("/feed")
        item = page.get_by_test_id("feed-item").first
        expect(item).to_be_visible()
        expect(item.get_by_test_id("reasons")).to_be_visible()
        item.get_by_text("How this score adds up").click()
        expect(item.get_by_test_id("score-breakdown").locator("tbody tr").first).to_be_visible()
        check_screen(page, errors, phone)
        screenshot(page, f"feed-{variant}")

        page = as_(a)
        page.goto("/connections")
        expect(page.get_by_test_id("incoming-request").filter(has_text=c.name)).to_be_visible()
        expect(page.get_by_test_id("connection").filter(has_text=b.name)).to_be_visible()
        check_screen(page, errors, phone)
        screenshot(page, f"connections-{variant}")

        page.goto("/chat" if phone else f"/chat/{b.id}")
        if phone:
            expect(page.get_by_test_id("conversation").filter(has_text=b.name)).to_be_visible()
            check_screen(page, errors, phone)
            screenshot(page, "chat-list-phone")
            page.get_by_test_id("conversation").filter(has_text=b.name).click()
        expect(messages(page, "Yes, see you there.")).to_be_visible()
        page.get_by_label(f"Message to {b.name}").fill("Drafting a reply…")
        check_screen(page, errors, phone)
        screenshot(page, f"chat-{variant}")

        # The simpler screens: a path, what shows it is ready, a name.
        screens: list[tuple[str, Callable[[Page], None], str]] = [
            (
                "/profile",
                lambda p: expect(p.get_by_test_id("profile-card")).to_be_visible(),
                "profile",
            ),
            (
                f"/profile/{b.id}",
                lambda p: expect(p.get_by_test_id("profile-name")).to_have_text(b.name),
                "profile-other",
            ),
            (
                "/membership",
                lambda p: expect(p.get_by_test_id("plan")).to_have_count(2),
                "membership",
            ),
            (
                "/settings",
                lambda p: expect(p.get_by_test_id("prefs-form")).to_be_visible(),
                "settings",
            ),
        ]
        for path, ready, name in screens:
            page.goto(path)
            ready(page)
            check_screen(page, errors, phone)
            screenshot(page, f"{name}-{variant}")

        signed_out = new_context(viewport=viewport).new_page()
        signed_out.goto("/login")
        expect(signed_out.get_by_test_id("login-form")).to_be_visible()
        check_screen(signed_out, [], phone)
        screenshot(signed_out, f"login-{variant}")
        signed_out.goto("/signup")
        expect(signed_out.get_by_test_id("signup-form")).to_be_visible()
        screenshot(signed_out, f"signup-{variant}")

"""Browser tests: the web app in headless Chromium against the whole stack.

The stack is ``devconnect up`` on free ports with its own embedded services
(tests/stack_harness.py), started once for the module's tests and stopped by
PID. The browser is Debian's Chromium (``make tools`` installs it), driven by
Playwright's sync API; where Chromium or Playwright is missing every test here
skips and says why, never silently. Everything is scoped to this package: while
Playwright's sync API is open, the main thread has a running event loop, which
the rest of the suite's async tests must not meet.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.harness import ROOT
from tests.stack_harness import Launcher

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ACCESS_TTL_S = 40


def chromium_path() -> str | None:
    explicit = os.environ.get("DEVCONNECT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="package")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make tools`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is not installed (the `test` extra)")
    return path


@contextmanager
def browser_stack(prefix: str) -> Iterator[Launcher]:
    """A whole stack (`devconnect up`) set for browsers, stopped by PID on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        launcher = Launcher.create(Path(tmp))
        # Every browser here signs up from 127.0.0.1: lift the per-address signup limit.
        launcher.env["DEVCONNECT_RATE_SIGNUP_IP_COUNT"] = "1000"
        # Access tokens live 40 s here (900 s by default), so that every test
        # longer than that runs through the app's renewals: the socket's `auth`
        # frame before expiry, and REST's refresh after a 401.
        launcher.env["DEVCONNECT_JWT_ACCESS_TTL_S"] = str(ACCESS_TTL_S)
        try:
            launcher.start()
            yield launcher
        finally:
            launcher.cleanup()


@pytest.fixture(scope="package")
def stack(chromium: str) -> Iterator[Launcher]:
    """The package's stack: attributes url, chat_url, simulator_url, var."""
    with browser_stack("devconnect-browser-") as launcher:
        yield launcher


@pytest.fixture(scope="package")
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_context(browser: Browser, stack: Launcher) -> Iterator[Callable[..., BrowserContext]]:
    """A factory of fresh browser contexts (separate cookie jars) on the app's origin."""
    made: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        options.setdefault("base_url", stack.url)
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """``screenshot(page, "feed")`` writes docs/screenshots/feed.png."""

    def take(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take

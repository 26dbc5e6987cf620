"""Browser tests: Playwright driving the system's Chromium against pytest-django's live server.

Playwright never downloads a browser here: it launches the Chromium the machine has (Debian's
`chromium` package, which `.ci/run` installs; `CHROMIUM_PATH` names another binary). Without
one, every browser test is skipped with the reason.

The live server runs in a thread of this process and, on SQLite, shares the test's in-memory
database connection, which two threads must never use at once. Every request the page makes
goes through a route handler, and Playwright's sync API runs route handlers on the test's
thread only while the test is inside a Playwright call: a request the page makes while the
test itself works on the database (running the worker, say) waits until the test is back in
Playwright. The test touches the database only once the page it acted on has loaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

# The folder the README names; .ci/run keeps it as the run's artifacts.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}
# Playwright's default is 5 s per expectation; a loaded CI machine gets more.
EXPECT_TIMEOUT_MS = 15_000


def chromium_executable() -> str | None:
    """The Chromium to drive: `CHROMIUM_PATH`, else the first one on PATH."""
    configured = os.environ.get("CHROMIUM_PATH", "")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_configure(config: pytest.Config) -> None:
    # The live server listens on 127.0.0.1 (pytest-django's default is "localhost"), so the
    # one address the pages may reach is literally 127.0.0.1.
    if not config.getvalue("liveserver"):
        config.option.liveserver = "127.0.0.1"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "no Chromium to drive: install Debian's `chromium` (apt-get install chromium) "
            "or set CHROMIUM_PATH"
        )
    # Playwright's sync API keeps an asyncio loop marked running on this thread (its calls
    # switch greenlets into it), so Django would refuse every query the test makes, as if from
    # async code. The test's code is synchronous: tell Django so, for as long as Playwright runs.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_executable(), headless=True)
    # A run's screenshots only: none left over from an earlier run to be taken for this one's.
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    yield browser
    browser.close()


@dataclass
class Browsing:
    """One browser tab on the live server, with what it logged and tried to reach."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"

    def log_in(self, username: str, password: str) -> None:
        self.open("/admin/login/?next=/admin/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("button", name="Log out")).to_be_visible()

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def is_local(self, url: str) -> bool:
        parts, server = urlsplit(url), urlsplit(self.base_url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.hostname == server.hostname and parts.port == server.port


@pytest.fixture
def browsing(browser: Browser, live_server: Any) -> Iterator[Browsing]:
    """A fresh tab (no cookies) at 1400 px; any request to another host fails the test."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    tab = Browsing(page=page, base_url=live_server.url)

    def guard(route: Route) -> None:
        # Stopped in the browser; `observe` records it.
        if tab.is_local(route.request.url):
            route.continue_()
        else:
            route.abort()

    def observe(request: Request) -> None:
        # Every request the pages make, routed or not (one a service worker makes, say).
        if not tab.is_local(request.url):
            tab.foreign_requests.append(request.url)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.console_errors.append(f"{message.text} ({message.location})")

    context.route("**/*", guard)
    context.on("request", observe)
    page.on("console", console)
    page.on("pageerror", lambda error: tab.console_errors.append(f"uncaught: {error}"))
    yield tab
    context.close()
    assert not tab.foreign_requests, f"the pages reached beyond the server: {tab.foreign_requests}"
    assert not tab.console_errors, f"the browser console had errors: {tab.console_errors}"

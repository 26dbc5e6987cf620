"""The browser tests' own checks can fail: a request beyond the server is stopped and
recorded, and a console error is recorded (each test's teardown fails on either)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browsing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_request_beyond_the_server_is_stopped_and_recorded(browsing: Browsing) -> None:
    browsing.open("/admin/login/")
    with browsing.page.expect_event("requestfailed") as failed:
        outcome = browsing.page.evaluate(
            """() => fetch("https://cdn.example.com/chart.js").then(() => "got", () => "blocked")"""
        )
    assert outcome == "blocked"
    # Aborted by the route before it left the browser, not refused by a DNS or the network.
    assert failed.value.failure == "net::ERR_FAILED"
    assert browsing.foreign_requests == ["https://cdn.example.com/chart.js"]
    # The failed fetch is in the console too.
    browsing.foreign_requests.clear()
    browsing.console_errors.clear()


def test_a_console_error_is_recorded(browsing: Browsing) -> None:
    browsing.open("/admin/login/")
    page = browsing.page
    with page.expect_event("console"):
        page.evaluate("() => console.error('boom')")
    with page.expect_event("pageerror"):
        page.evaluate("() => setTimeout(() => { throw new Error('uncaught boom'); })")
    assert browsing.console_errors[0].startswith("boom")
    assert any("uncaught boom" in error for error in browsing.console_errors)
    browsing.console_errors.clear()

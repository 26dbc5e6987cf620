"""The admin as staff use it, in Chromium at 1400 px: log in, the dashboard, a conversation's
thread, closing it, retrying a failed message, and what a support user sees."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.urls import reverse
from playwright.sync_api import expect

from smsproxy.common.privacy import mask_number
from smsproxy.proxy.models import Conversation, Message
from tests.browser.conftest import Browsing
from tests.browser.scenario import (
    ALICE,
    BOB,
    conversation_with_failed_forward,
    worker_run_once,
)

pytestmark = [
    pytest.mark.browser,
    # The live server reads what the test wrote; the rollback brings back what the migrations
    # wrote (the "Support (read-only)" group) after another test's flush.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "browser-test-pw-1"


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", password=PASSWORD)


def national(number: str) -> str:
    """+447700900501 as a British person writes it: 07700 900501."""
    digits = number.removeprefix("+44")
    return f"0{digits[:4]} {digits[4:]}"


def test_staff_log_in_and_the_dashboard_renders_on_its_own(browsing: Browsing, staff: Any) -> None:
    conversation_with_failed_forward()
    browsing.open("/admin/")
    expect(browsing.page).to_have_url(re.compile(r"/admin/login/"))
    browsing.screenshot("login")

    browsing.log_in("admin", PASSWORD)

    page = browsing.page
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("status")).to_contain_text("SANDBOX")
    dashboard = page.locator("#sms-dashboard")
    expect(dashboard).to_be_visible()
    expect(dashboard.locator("#figure-live-conversations")).to_have_text("1")
    expect(dashboard.locator("#figure-failed")).to_have_text("1")
    # The chart is drawn by the page's own stylesheet: bars with a height, no script, no CDN.
    bars = dashboard.locator(".sms-bar")
    expect(bars).to_have_count(24)
    assert dashboard.locator(".sms-seg").first.bounding_box() is not None
    # Nothing overflows sideways at 1400 px.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    browsing.screenshot("dashboard")
    assert browsing.console_errors == []
    assert browsing.foreign_requests == []

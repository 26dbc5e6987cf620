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
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message
from tests.browser.conftest import Browsing
from tests.browser.scenario import (
    ALICE,
    BOB,
    ERR_ANTI_SPAM,
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


def test_a_conversation_reads_as_a_thread_and_closes_after_a_confirmation(
    browsing: Browsing, staff: Any
) -> None:
    conversation, forward = conversation_with_failed_forward()
    browsing.log_in("admin", PASSWORD)
    page = browsing.page

    # A complaint names Alice's number as she writes it: the search finds her conversation.
    browsing.open(reverse("admin:proxy_conversation_changelist"))
    page.locator("#searchbar").fill(national(ALICE))
    page.locator("#searchbar").press("Enter")
    results = page.locator("#result_list tbody tr")
    expect(results).to_have_count(1)
    browsing.screenshot("conversations")
    expect(results).to_contain_text("booking-42")
    results.locator("th a").click()  # the conversation's id

    thread = page.locator(".conversation-thread")
    expect(thread).to_contain_text("Alice")
    expect(thread).to_contain_text("Bob")
    # Staff with every permission see the real numbers.
    expect(thread).to_contain_text(ALICE)
    inbound_row = thread.locator("tr", has_text="Running 5 minutes late")
    expect(inbound_row).to_contain_text("Received")
    forward_row = thread.locator("tr.thread-forward")
    expect(forward_row.get_by_role("link", name="forwarded to Bob")).to_have_attribute(
        "href", reverse("admin:proxy_message_change", args=[forward.pk])
    )
    expect(forward_row).to_contain_text("Failed")
    expect(forward_row).to_contain_text(ERR_ANTI_SPAM)
    expect(forward_row.locator(".error-description")).to_contain_text("Anti-spam rejection")
    browsing.screenshot("conversation")

    page.get_by_role("link", name="Close…").click()
    expect(page.locator("h1")).to_have_text("Close this conversation: are you sure?")
    browsing.screenshot("conversation-close")
    page.get_by_role("button", name="Yes, close it").click()

    expect(page.locator(".messagelist")).to_contain_text("Closed (was active)")
    expect(page.get_by_role("link", name="Close…")).to_have_count(0)
    expect(page.get_by_role("link", name="Reopen…")).to_be_visible()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.close_reason == Conversation.CloseReason.STAFF
    assert LogEntry.objects.filter(object_id=str(conversation.pk)).count() == 1


def test_staff_reassign_a_proxy_number_after_a_confirmation(browsing: Browsing, staff: Any) -> None:
    conversation, _ = conversation_with_failed_forward()
    alice = conversation.participants.get(real_number=ALICE)
    was = alice.proxy_number
    spare = VirtualNumber.objects.exclude(participants__conversation=conversation).get()
    browsing.log_in("admin", PASSWORD)
    page = browsing.page

    browsing.open(reverse("admin:proxy_conversation_change", args=[conversation.pk]))
    page.get_by_role("link", name="Reassign").click()
    page.get_by_role("radio", name=re.compile(r"^Alice \(")).check()
    page.get_by_label("New proxy number").select_option(label=spare.msisdn)
    browsing.screenshot("conversation-reassign")
    page.get_by_role("button", name="Reassign").click()

    expect(page.locator("h1")).to_have_text("Reassign a proxy number: are you sure?")
    expect(page.locator("#content")).to_contain_text(f"instead of {was.msisdn}")
    alice.refresh_from_db()
    assert alice.proxy_number == was  # nothing changed before the confirmation
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".messagelist")).to_contain_text(
        f"Reassigned Alice: proxy number {was.msisdn} → {spare.msisdn}."
    )
    alice.refresh_from_db()
    assert alice.proxy_number == spare


def test_staff_retry_a_failed_message_and_the_worker_sends_it_again(
    browsing: Browsing, staff: Any
) -> None:
    _, forward = conversation_with_failed_forward()
    browsing.log_in("admin", PASSWORD)
    page = browsing.page

    browsing.open(reverse("admin:proxy_message_changelist") + "?status__exact=failed")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator(".field-status_badge")).to_have_text("Failed")
    # The code in the list, what it means in its tooltip.
    expect(rows.locator("span[title^='Anti-spam rejection']")).to_have_text(f"{ERR_ANTI_SPAM} ⓘ")
    browsing.screenshot("messages-failed")
    rows.locator("th a").click()

    page.get_by_role("link", name="Retry").click()
    expect(page.locator("h1")).to_have_text("Retry this message: are you sure?")
    browsing.screenshot("message-retry")
    forward.refresh_from_db()
    assert forward.status == Message.Status.FAILED  # nothing changed before the confirmation
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".messagelist")).to_contain_text("Queued the message again.")
    expect(page.get_by_role("link", name="Retry")).to_have_count(0)
    forward.refresh_from_db()
    assert forward.status == Message.Status.QUEUED
    assert forward.attempts == 0

    worker_run_once()
    page.reload()
    expect(page.locator(".field-status .readonly")).to_have_text("Sent")
    browsing.screenshot("message")


def test_a_support_user_sees_real_numbers_masked(
    browsing: Browsing, django_user_model: Any
) -> None:
    conversation, forward = conversation_with_failed_forward()
    support = django_user_model.objects.create_user("support", password=PASSWORD, is_staff=True)
    support.groups.add(Group.objects.get(name="Support (read-only)"))
    browsing.log_in("support", PASSWORD)
    page = browsing.page

    def assert_masked(*shown: str) -> None:
        """None of Alice's and Bob's numbers in full in any way it is written, in the page's
        text or markup (a tooltip, a link); the masked form of each of `shown` in its text."""
        html = page.content()
        for written in (ALICE, ALICE[1:], national(ALICE), BOB, BOB[1:], national(BOB)):
            assert written not in html, f"{written} in full on {page.url}"
        text = page.locator("body").inner_text()
        for number in shown:
            assert mask_number(number) in text, f"{mask_number(number)} not on {page.url}"

    # Followed by clicking, as support would: a number typed in the search box would show.
    browsing.open(reverse("admin:proxy_conversation_changelist"))
    page.locator("#result_list tbody tr", has_text="booking-42").locator("th a").click()
    expect(page.locator(".conversation-thread")).to_contain_text("Alice")
    assert_masked(ALICE, BOB)
    # Read-only: no button to change anything.
    expect(page.get_by_role("link", name="Close…")).to_have_count(0)
    browsing.screenshot("support-conversation")

    browsing.open(reverse("admin:proxy_message_changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(conversation.messages.count())
    assert_masked(ALICE, BOB)
    expect(page.locator("select[name=action] option[value=retry]")).to_have_count(0)
    browsing.screenshot("support-messages")

    browsing.open(reverse("admin:proxy_message_change", args=[forward.pk]))  # to Bob
    assert_masked(BOB)

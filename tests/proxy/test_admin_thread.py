"""The conversation page as a thread, and its Close / Reopen buttons behind a confirmation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from smsproxy.proxy.models import Conversation, Message, MessagePart
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ALICE, BOB = "+447700900601", "+447700900602"


def exchange(conversation: Conversation, text: str, *, failed: bool = False) -> Message:
    """Alice writes `text`; it is forwarded to Bob (delivered, or failed)."""
    alice, bob = conversation.participants.order_by("id")
    inbound = MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED,
        sender=ALICE,
        recipient=alice.proxy_number.msisdn,
        text=text,
    )
    MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.FAILED if failed else Message.Status.DELIVERED,
        sender=bob.proxy_number.msisdn,
        recipient=BOB,
        text=text,
        forwarded_from=inbound,
        error_code="6" if failed else "",
        error_text="Absent subscriber" if failed else "",
    )
    return inbound


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(ALICE, BOB, reference="booking-9")
    exchange(conversation, "Is the bike still for sale?", failed=True)
    return conversation


def page(client: Client, conversation: Conversation) -> str:
    response = client.get(reverse("admin:proxy_conversation_change", args=[conversation.pk]))
    assert response.status_code == HTTPStatus.OK
    return response.content.decode()


def thread_of(content: str) -> str:
    start = content.index('<div class="conversation-thread">')
    return content[start : content.index("</div>", start)]


def test_the_page_reads_as_a_thread(admin_client: Client, conversation: Conversation) -> None:
    alice, bob = conversation.participants.order_by("id")
    thread = thread_of(page(admin_client, conversation))

    assert f"Alice ({ALICE}) via {alice.proxy_number.msisdn}" in thread
    assert f"Bob ({BOB}) via {bob.proxy_number.msisdn}" in thread
    # The intros come first, from the service; then Alice's text, its forward beneath it.
    assert thread.index("smsproxy → Alice") < thread.index("Alice → Bob")
    assert thread.index("Is the bike still for sale?") < thread.index("forwarded to Bob")
    assert "status-received" in thread and "status-failed" in thread
    assert "6: Absent subscriber" in thread


def test_a_forward_sits_under_the_text_it_carries(
    admin_client: Client, conversation: Conversation
) -> None:
    exchange(conversation, "Yes, come by at six")
    thread = thread_of(page(admin_client, conversation))

    first, second = thread.index("Is the bike"), thread.index("Yes, come by")
    forwards = [i for i in range(len(thread)) if thread.startswith("forwarded to Bob", i)]
    assert len(forwards) == 2
    assert first < forwards[0] < second < forwards[1]


def test_the_page_query_count_does_not_grow_with_the_thread(
    admin_client: Client, conversation: Conversation, django_assert_max_num_queries: Any
) -> None:
    for index in range(10):
        exchange(conversation, f"Message {index}")
    with django_assert_max_num_queries(12):
        page(admin_client, conversation)


def test_close_asks_then_closes_and_records_it(
    admin_client: Client, admin_user: Any, conversation: Conversation
) -> None:
    url = reverse("admin:proxy_conversation_close", args=[conversation.pk])
    link = '<span class="visually-hidden">Close conversation: </span>Close…</a>'
    assert f'<a href="{url}">{link}' in page(admin_client, conversation)
    numbers = [p.proxy_number.msisdn for p in conversation.participants.order_by("id")]

    confirmation = admin_client.get(url)
    assert confirmation.status_code == HTTPStatus.OK
    assert "are you sure?" in confirmation.content.decode()
    assert ">Confirm: yes, close it</button>" in confirmation.content.decode()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE

    response = admin_client.post(url, {"confirm": "yes"}, follow=True)
    assert "Closed (was active); its proxy numbers are free." in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.status, conversation.close_reason) == ("closed", "staff")
    entry = LogEntry.objects.get(object_id=str(conversation.pk), action_flag=CHANGE)
    assert (entry.user_id, entry.change_message) == (
        admin_user.pk,
        f"Closed: status active → closed, reason staff; proxy numbers freed: "
        f"{numbers[0]}, {numbers[1]}.",
    )


def test_reopen_asks_then_reopens_and_records_it(
    admin_client: Client, conversation: Conversation
) -> None:
    admin_client.post(reverse("admin:proxy_conversation_close", args=[conversation.pk]))
    url = reverse("admin:proxy_conversation_reopen", args=[conversation.pk])
    content = page(admin_client, conversation)
    link = '<span class="visually-hidden">Reopen conversation: </span>Reopen…</a>'
    assert f'<a href="{url}">{link}' in content
    assert reverse("admin:proxy_conversation_close", args=[conversation.pk]) not in content

    assert "are you sure?" in admin_client.get(url).content.decode()
    assert admin_client.post(url).status_code == HTTPStatus.FOUND

    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE
    assert conversation.participants.filter(active=True).count() == 2
    entry = LogEntry.objects.filter(object_id=str(conversation.pk)).latest("pk")
    conversation.refresh_from_db()
    assert conversation.expires_at is None  # opened without a TTL: none after reopening either
    # Both got their own numbers back: no "proxy number … → …" part.
    assert entry.change_message == "Reopened: status closed (reason staff) → active, no expiry."


def test_closing_a_closed_conversation_changes_nothing(
    admin_client: Client, conversation: Conversation
) -> None:
    url = reverse("admin:proxy_conversation_close", args=[conversation.pk])
    admin_client.post(url)
    response = admin_client.post(url, follow=True)
    assert "The conversation is closed, reason staff." in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(conversation.pk)).count() == 1


def test_the_buttons_need_the_change_permission(
    client: Client, django_user_model: Any, conversation: Conversation
) -> None:
    staff = django_user_model.objects.create_user("viewer", password="pw-123456", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(codename__in=["view_conversation", "view_participant"])
    )
    client.force_login(staff)
    content = page(client, conversation)
    for name in ("close", "reopen", "reassign"):
        url = reverse(f"admin:proxy_conversation_{name}", args=[conversation.pk])
        assert url not in content
        assert client.get(url).status_code == HTTPStatus.FORBIDDEN
        assert client.post(url, {"confirm": "yes"}).status_code == HTTPStatus.FORBIDDEN
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE


def test_an_error_code_is_shown_with_what_vonage_says_it_means(
    admin_client: Client, conversation: Conversation
) -> None:
    """The fixture's failed forward has code 6: as a send's status, "invalid message"; once a
    delivery receipt of its part says err-code 6, "anti-spam rejection"."""
    forward = conversation.messages.get(status=Message.Status.FAILED)
    assert "Invalid message" in thread_of(page(admin_client, conversation))

    MessagePart.objects.create(
        message=forward, vonage_message_id="0C0000000006", status="failed", error_code="6"
    )
    thread = thread_of(page(admin_client, conversation))
    assert "6: Absent subscriber" in thread and "Anti-spam rejection" in thread
    assert "Invalid message" not in thread

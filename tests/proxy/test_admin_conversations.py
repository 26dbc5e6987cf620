"""Admin smoke tests: every conversation page, its filters and search.

The staff actions have their own files: test_admin_thread (Close, Reopen), test_admin_reassign,
test_admin_close_action (closing from the list), test_admin_audit (the history they write).
"""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from smsproxy.proxy.admin.conversations import MESSAGE_INLINE_LIMIT
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.services.conversations import conversation_close
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:proxy_conversation_changelist")


def person(index: int) -> str:
    return f"+447700900{500 + index:03d}"


def change_url(conversation: Conversation) -> str:
    return reverse("admin:proxy_conversation_change", args=[conversation.pk])


def change_form_data(response: Any) -> dict[str, Any]:
    """The change form as the browser would submit it unchanged, inlines included."""

    def value_of(value: Any) -> Any:
        value = getattr(value, "pk", value)
        return "" if value is None else value

    form = response.context["adminform"].form
    data = {name: value_of(form[name].value()) for name in form.fields}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management.initial.get(name, "")
        for subform in formset.forms:
            for name in subform.fields:
                data[subform.add_prefix(name)] = value_of(subform[name].value())
    return data


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(0), person(1), reference="booking-42")
    alice = conversation.participants.get(real_number=person(0))
    MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED,
        sender=person(0),
        recipient=alice.proxy_number.msisdn,
        text="On my way",
        vonage_message_id="0A00000001",
    )
    return conversation


# --- Pages ----------------------------------------------------------------------------------------


def test_changelist(admin_client: Client, conversation: Conversation) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert "booking-42" in content
    assert person(0) in content and person(1) in content


def test_changelist_query_count_does_not_grow(
    admin_client: Client, conversation: Conversation
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == HTTPStatus.OK
        return len(captured)

    baseline = queries()
    for index in range(4):
        open_between(person(10 + 2 * index), person(11 + 2 * index))
    assert queries() == baseline


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"live", "expired", "closed"}),
        ({"status": "active"}, {"live"}),
        ({"status": "expired"}, {"expired"}),
        ({"status": "closed"}, {"closed"}),
        ({"close_reason__exact": "staff"}, {"closed"}),
        ({"close_reason__exact": "expired"}, set()),
    ],
)
def test_changelist_filters(
    admin_client: Client, conversation: Conversation, params: dict[str, str], expected: set[str]
) -> None:
    expired = open_between(person(10), person(11), ttl=60)
    Conversation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    closed = open_between(person(12), person(13))
    conversation_close(conversation=closed, reason=Conversation.CloseReason.STAFF)
    by_name = {"live": conversation.pk, "expired": expired.pk, "closed": closed.pk}

    response = admin_client.get(CHANGELIST, params)

    assert response.status_code == HTTPStatus.OK
    listed = {row.pk for row in response.context["cl"].result_list}
    assert listed == {by_name[name] for name in expected}


def test_changelist_shows_an_unswept_expired_conversation_as_expired(
    admin_client: Client, conversation: Conversation
) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = admin_client.get(CHANGELIST)
    assert response.status_code == HTTPStatus.OK
    assert "Expired, not yet swept" in response.content.decode()


@pytest.mark.parametrize(
    "term", ["booking-42", "07700 900500", "447700900501", "Alice", "{public_id}"]
)
def test_changelist_search(admin_client: Client, conversation: Conversation, term: str) -> None:
    other = open_between(person(10), person(11), reference="booking-99")
    response = admin_client.get(CHANGELIST, {"q": term.format(public_id=conversation.public_id)})
    assert response.status_code == HTTPStatus.OK
    listed = {row.pk for row in response.context["cl"].result_list}
    assert conversation.pk in listed
    if term != "Alice":  # both are named Alice
        assert other.pk not in listed


def test_search_respects_the_list_filters(admin_client: Client, conversation: Conversation) -> None:
    response = admin_client.get(CHANGELIST, {"q": "07700 900500", "status": "closed"})
    assert response.status_code == HTTPStatus.OK
    assert list(response.context["cl"].result_list) == []


def test_change_page_shows_participants_and_messages(
    admin_client: Client, conversation: Conversation
) -> None:
    response = admin_client.get(change_url(conversation))
    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert str(conversation.public_id) in content
    for participant in conversation.participants.all():
        assert participant.real_number in content
    assert "On my way" in content
    assert "You can now text" in content  # the intro messages


def test_change_page_shows_the_latest_messages_and_links_to_all(
    admin_client: Client, conversation: Conversation
) -> None:
    for index in range(MESSAGE_INLINE_LIMIT + 5):
        MessageFactory.create(conversation=conversation, text=f"Numbered message {index:03d}")
    elsewhere = MessageFactory.create(text="Another conversation's message")

    response = admin_client.get(change_url(conversation))

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    shown = [
        index for index in range(MESSAGE_INLINE_LIMIT + 5) if f"message {index:03d}" in content
    ]
    assert shown == list(range(5, MESSAGE_INLINE_LIMIT + 5))
    assert "On my way" not in content  # older than the latest 50
    total = conversation.messages.count()
    link = f"{reverse('admin:proxy_message_changelist')}?conversation__id__exact={conversation.pk}"
    assert f'<a href="{link}">All {total} message(s)</a>' in content

    listing = admin_client.get(link)
    assert listing.status_code == HTTPStatus.OK
    assert listing.context["cl"].result_count == total
    listed = listing.content.decode()
    assert "On my way" in listed
    assert elsewhere.text not in listed


def test_history_page(admin_client: Client, conversation: Conversation) -> None:
    response = admin_client.get(reverse("admin:proxy_conversation_history", args=[conversation.pk]))
    assert response.status_code == HTTPStatus.OK


def test_no_add_or_delete(admin_client: Client, conversation: Conversation) -> None:
    add = reverse("admin:proxy_conversation_add")
    assert admin_client.get(add).status_code == HTTPStatus.FORBIDDEN
    delete = reverse("admin:proxy_conversation_delete", args=[conversation.pk])
    assert admin_client.get(delete).status_code == HTTPStatus.FORBIDDEN
    assert admin_client.post(delete, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_reference_is_read_only(admin_client: Client, conversation: Conversation) -> None:
    """The marketplace sets it through the API; an edit here would bypass the services."""
    page = admin_client.get(change_url(conversation))
    assert 'name="reference"' not in page.content.decode()
    assert "booking-42" in page.content.decode()
    data = change_form_data(page)
    data["reference"] = "booking-43"

    response = admin_client.post(change_url(conversation), data)

    assert response.status_code == HTTPStatus.FOUND, response.context["errors"]
    conversation.refresh_from_db()
    assert conversation.reference == "booking-42"
    assert conversation.participants.filter(active=True).count() == 2


def test_the_page_edits_nothing_in_place(admin_client: Client, conversation: Conversation) -> None:
    """Proxy numbers change through Reassign (a confirmation, the service's history), so the
    participants are read-only and there is nothing to save."""
    content = admin_client.get(change_url(conversation)).content.decode()
    assert 'name="participants-0-proxy_number"' not in content
    assert 'name="_save"' not in content
    assert reverse("admin:proxy_conversation_reassign", args=[conversation.pk]) in content

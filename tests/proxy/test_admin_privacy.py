"""Support staff without `view_real_numbers` see real numbers masked, and change nothing."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from smsproxy.common.privacy import mask_number
from smsproxy.proxy.models import Conversation, Event, Message
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ALICE, BOB = "+447700900501", "+447700900502"


@pytest.fixture
def conversation(settings: Any) -> Conversation:
    settings.PROXY_EVENTS_URL = "https://market.example.com/smsproxy/events"
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(ALICE, BOB, reference="booking-7")
    alice, bob = conversation.participants.order_by("id")
    inbound = MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED,
        sender=ALICE,
        recipient=alice.proxy_number.msisdn,
        text="On my way",
    )
    MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.FAILED,
        sender=bob.proxy_number.msisdn,
        recipient=BOB,
        error_code="1",
        error_text=f"Throttled sending to {BOB}",
        text="On my way",
        forwarded_from=inbound,
    )
    return conversation


@pytest.fixture
def support(client: Client, django_user_model: Any) -> Client:
    """A client logged in as a member of the group the migration creates."""
    user = django_user_model.objects.create_user("support", password="pw-123456", is_staff=True)
    user.groups.add(Group.objects.get(name="Support (read-only)"))
    client.force_login(user)
    return client


@pytest.fixture
def trusted(support: Client, django_user_model: Any) -> Client:
    """The support user, also allowed to see real numbers."""
    user = django_user_model.objects.get(username="support")
    user.user_permissions.add(Permission.objects.get(codename="view_real_numbers"))
    return support


def pages(conversation: Conversation) -> list[str]:
    inbound = conversation.messages.get(direction=Message.Direction.INBOUND)
    outbound = conversation.messages.get(forwarded_from=inbound)
    event = Event.objects.filter(conversation=conversation).earliest("pk")  # created: numbers
    return [
        reverse("admin:proxy_conversation_changelist"),
        reverse("admin:proxy_conversation_change", args=[conversation.pk]),
        reverse("admin:proxy_message_changelist"),
        reverse("admin:proxy_message_change", args=[inbound.pk]),
        reverse("admin:proxy_message_change", args=[outbound.pk]),
        reverse("admin:proxy_event_changelist"),
        reverse("admin:proxy_event_change", args=[event.pk]),
        reverse("admin:numbers_virtualnumber_changelist"),
        reverse("admin:numbers_provisioningjob_changelist"),
    ]


def showing_numbers(conversation: Conversation) -> list[str]:
    """The pages that show a real number: all but the event, number and job lists."""
    return [
        url
        for url in pages(conversation)
        if not url.endswith(("/event/", "/virtualnumber/", "/provisioningjob/"))
    ]


def test_the_support_group_may_view_but_not_see_real_numbers() -> None:
    group = Group.objects.get(name="Support (read-only)")
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert {
        "view_conversation",
        "view_participant",
        "view_message",
        "view_event",
        "view_virtualnumber",
        "view_provisioningjob",
    } <= codenames
    assert all(codename.startswith("view_") for codename in codenames)
    assert "view_real_numbers" not in codenames


def test_support_sees_every_real_number_masked(support: Client, conversation: Conversation) -> None:
    for url in pages(conversation):
        response = support.get(url)
        assert response.status_code == HTTPStatus.OK, url
        content = response.content.decode()
        assert ALICE not in content and BOB not in content, url
    for url in showing_numbers(conversation):
        content = support.get(url).content.decode()
        assert mask_number(ALICE) in content or mask_number(BOB) in content, url


def test_support_still_sees_proxy_numbers_in_full(
    support: Client, conversation: Conversation
) -> None:
    proxy_numbers = [p.proxy_number.msisdn for p in conversation.participants.all()]
    content = support.get(reverse("admin:proxy_message_changelist")).content.decode()
    assert all(number in content for number in proxy_numbers)


def test_support_finds_a_conversation_by_a_number_it_was_given(
    support: Client, conversation: Conversation
) -> None:
    response = support.get(reverse("admin:proxy_conversation_changelist"), {"q": "07700 900501"})
    assert [row.pk for row in response.context["cl"].result_list] == [conversation.pk]
    assert ALICE not in response.content.decode()
    assert mask_number(ALICE) in response.content.decode()

    response = support.get(reverse("admin:proxy_message_changelist"), {"q": ALICE})
    rows = response.context["cl"].result_list
    assert rows and all(ALICE in {row.sender, row.recipient} for row in rows)
    # The search box shows what was typed; the results show it masked.
    assert ALICE not in response.content.decode().replace(f'value="{ALICE}"', "")


def test_support_cannot_change_anything(support: Client, conversation: Conversation) -> None:
    url = reverse("admin:proxy_conversation_change", args=[conversation.pk])
    assert support.post(url, {}).status_code == HTTPStatus.FORBIDDEN
    response = support.post(
        reverse("admin:proxy_conversation_changelist"),
        {"action": "close_conversations", "_selected_action": [conversation.pk]},
    )
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE
    for url in pages(conversation):
        content = support.get(url).content.decode()
        assert 'name="action"' not in content, url
    assert response.status_code in {HTTPStatus.OK, HTTPStatus.FOUND}


@pytest.mark.parametrize("who", ["trusted", "admin_client"])
def test_staff_allowed_to_see_real_numbers_see_them_in_full(
    who: str, request: pytest.FixtureRequest, conversation: Conversation
) -> None:
    client: Client = request.getfixturevalue(who)
    for url in showing_numbers(conversation):
        response = client.get(url)
        assert response.status_code == HTTPStatus.OK, url
        content = response.content.decode()
        assert ALICE in content or BOB in content, url

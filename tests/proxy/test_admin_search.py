"""Tracing a complaint: conversations and messages found by any number in any format, or by
the marketplace's reference; badges and truncated texts in the lists."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.db.models import Q
from django.test import Client
from django.urls import reverse

from smsproxy.proxy.models import Conversation, Message
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

CONVERSATIONS = reverse("admin:proxy_conversation_changelist")
MESSAGES = reverse("admin:proxy_message_changelist")
LONG_TEXT = "Running 5 minutes late, the traffic on the bridge is terrible today"


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create(msisdn="+447700900011")
    VirtualNumberFactory.create(msisdn="+447700900012")
    conversation = open_between("+447700900501", "+447700900502", reference="booking-42")
    MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.INBOUND,
        status=Message.Status.UNROUTED,
        sender="+447700900501",
        recipient=conversation.participants.order_by("id")[0].proxy_number.msisdn,
        text=LONG_TEXT,
    )
    return conversation


def listed(client: Client, url: str, term: str) -> list[int]:
    response = client.get(url, {"q": term})
    assert response.status_code == HTTPStatus.OK
    return [row.pk for row in response.context["cl"].result_list]


@pytest.mark.parametrize("form", ["national", "e164", "digits"])
def test_conversations_by_proxy_number_in_any_format(
    admin_client: Client, conversation: Conversation, form: str
) -> None:
    open_between("+447700900601", "+447700900602", reference="booking-99")  # same pool
    proxy = conversation.participants.order_by("id")[0].proxy_number.msisdn
    term = {"national": f"0{proxy[3:7]} {proxy[7:]}", "e164": proxy, "digits": proxy[1:]}[form]

    found = listed(admin_client, CONVERSATIONS, term)

    assert conversation.pk in found


def test_messages_by_number_in_national_format_and_by_reference(
    admin_client: Client, conversation: Conversation
) -> None:
    MessageFactory.create(sender="+447700900999", text="unrelated")
    mine = list(conversation.messages.values_list("pk", flat=True))

    by_alice = Message.objects.filter(
        Q(sender="+447700900501") | Q(recipient="+447700900501")
    ).values_list("pk", flat=True)

    assert by_alice and sorted(listed(admin_client, MESSAGES, "07700 900501")) == sorted(by_alice)
    assert sorted(listed(admin_client, MESSAGES, "booking-42")) == sorted(mine)
    assert listed(admin_client, MESSAGES, "booking-4") == []  # a reference matches exactly


def test_message_list_badges_and_truncated_text(
    admin_client: Client, conversation: Conversation, django_assert_max_num_queries
) -> None:
    MessageFactory.create_batch(5, status=Message.Status.DELIVERED)

    with django_assert_max_num_queries(10):
        response = admin_client.get(MESSAGES)

    content = response.content.decode()
    assert "status-unrouted" in content and "status-delivered" in content
    assert f'title="{LONG_TEXT}"' in content
    assert f">{LONG_TEXT[:39]}…</span>" in content


def test_conversation_list_shows_a_live_badge(
    admin_client: Client, conversation: Conversation, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(10):
        response = admin_client.get(CONVERSATIONS)

    assert "status-active" in response.content.decode()

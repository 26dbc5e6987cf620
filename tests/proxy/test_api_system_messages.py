"""System messages: `POST /api/conversations/{id}/messages/` (DESIGN.md §7)."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from smsproxy.common.redaction import REDACTED_NUMBER
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.services.conversations import conversation_close
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ALICE = "+447700900501"
BOB = "+447700900502"
STRANGER = "+447700900599"


def messages_url(conversation: Conversation) -> str:
    return reverse("conversation-messages", kwargs={"public_id": str(conversation.public_id)})


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create_batch(2)
    return open_between(ALICE, BOB, intro=False)


def system_messages() -> list[Message]:
    return list(Message.objects.filter(purpose=Message.Purpose.SYSTEM))


def test_a_system_message_goes_from_the_participants_proxy_number(
    api_client: APIClient, conversation: Conversation
) -> None:
    bob = conversation.participants.get(real_number=BOB)

    response = api_client.post(
        messages_url(conversation),
        {"to": "07700 900502", "text": "Your driver is 2 minutes away."},  # national format
        format="json",
    )

    assert response.status_code == HTTPStatus.CREATED, response.json()
    [message] = system_messages()
    assert (message.sender, message.recipient) == (bob.proxy_number.msisdn, BOB)
    assert (message.direction, message.status) == (
        Message.Direction.OUTBOUND,
        Message.Status.QUEUED,
    )
    assert message.conversation == conversation
    assert message.text == "Your driver is 2 minutes away."
    data = response.json()
    assert (data["id"], data["purpose"], data["recipient"]) == (message.pk, "system", BOB)

    listed = api_client.get(messages_url(conversation)).json()["results"]
    assert [(item["id"], item["purpose"]) for item in listed] == [(message.pk, "system")]


def test_a_system_message_is_redacted_like_a_forward(
    api_client: APIClient, conversation: Conversation, settings: Any
) -> None:
    text = "Call Alice on +44 7700 900501"
    response = api_client.post(messages_url(conversation), {"to": BOB, "text": text}, format="json")
    assert response.status_code == HTTPStatus.CREATED
    assert system_messages()[0].text == f"Call Alice on {REDACTED_NUMBER}"

    settings.PROXY_REDACT_NUMBERS = False
    api_client.post(messages_url(conversation), {"to": BOB, "text": text}, format="json")
    assert system_messages()[1].text == text


def test_not_a_participant(api_client: APIClient, conversation: Conversation) -> None:
    response = api_client.post(
        messages_url(conversation), {"to": STRANGER, "text": "Hello"}, format="json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "not_a_participant"
    assert "to" in response.json()["fields"]
    assert not system_messages()


@pytest.mark.parametrize("how", ["closed", "expired"])
def test_a_closed_or_expired_conversation_is_409_and_sends_nothing(
    api_client: APIClient, conversation: Conversation, how: str
) -> None:
    if how == "closed":
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    else:
        Conversation.objects.filter(pk=conversation.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )

    response = api_client.post(messages_url(conversation), {"to": BOB, "text": "Hi"}, format="json")

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["code"] == "conversation_closed"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"to": BOB, "text": ""}, "text"),
        ({"to": BOB, "text": "   \n "}, "text"),
        ({"to": BOB}, "text"),
        ({"to": "not a number", "text": "Hi"}, "to"),
        ({"text": "Hi"}, "to"),
    ],
)
def test_invalid_bodies(
    api_client: APIClient, conversation: Conversation, payload: dict[str, str], field: str
) -> None:
    response = api_client.post(messages_url(conversation), payload, format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["fields"]
    assert not Message.objects.exists()


def test_the_text_length_is_capped(
    api_client: APIClient, conversation: Conversation, settings: Any
) -> None:
    settings.PROXY_MAX_TEXT_LENGTH = 10
    long = api_client.post(messages_url(conversation), {"to": BOB, "text": "x" * 11}, format="json")
    assert long.status_code == HTTPStatus.BAD_REQUEST
    assert "text" in long.json()["fields"]
    fits = api_client.post(messages_url(conversation), {"to": BOB, "text": "x" * 10}, format="json")
    assert fits.status_code == HTTPStatus.CREATED


def test_unknown_conversation_is_404(api_client: APIClient) -> None:
    url = reverse("conversation-messages", kwargs={"public_id": "not-a-uuid"})
    response = api_client.post(url, {"to": BOB, "text": "Hi"}, format="json")
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_a_system_message_pushes_the_expiry_from_the_last_message(
    api_client: APIClient, settings: Any
) -> None:
    VirtualNumberFactory.create()
    conversation = open_between(ALICE, BOB, ttl=3600)
    settings.PROXY_TTL_FROM = "last_message"
    old_expiry = timezone.now() + timedelta(minutes=5)
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=old_expiry)

    response = api_client.post(messages_url(conversation), {"to": BOB, "text": "Hi"}, format="json")

    assert response.status_code == HTTPStatus.CREATED
    conversation.refresh_from_db()
    assert conversation.expires_at is not None
    assert conversation.expires_at > old_expiry + timedelta(minutes=50)
    settings.PROXY_TTL_FROM = "created"
    before = conversation.expires_at
    api_client.post(messages_url(conversation), {"to": BOB, "text": "Hi"}, format="json")
    conversation.refresh_from_db()
    assert conversation.expires_at == before

"""Closing conversations from the list: a confirmation page naming them, then the close."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from smsproxy.common.privacy import mask_number
from smsproxy.proxy.models import Conversation
from smsproxy.proxy.services.conversations import conversation_close
from tests.factories import VirtualNumberFactory
from tests.proxy.admin_users import OPERATOR, VIEWER, staff_login
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:proxy_conversation_changelist")


@pytest.fixture
def conversations() -> tuple[Conversation, Conversation]:
    """A live conversation (booking-1) and one the API closed (booking-2)."""
    VirtualNumberFactory.create_batch(2)
    live = open_between(person(0), person(1), reference="booking-1")
    closed = open_between(person(2), person(3), reference="booking-2")
    conversation_close(conversation=closed, reason=Conversation.CloseReason.API)
    return live, closed


def select(*conversations: Conversation, **extra: str) -> dict[str, Any]:
    return {
        "action": "close_conversations",
        "_selected_action": [c.pk for c in conversations],
        **extra,
    }


def test_the_action_asks_first_naming_what_it_will_close(
    admin_client: Client, conversations: tuple[Conversation, Conversation]
) -> None:
    live, closed = conversations

    response = admin_client.post(CHANGELIST, select(live, closed))

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert "are you sure?" in content
    to_close = content[content.index("To be closed (1)") : content.index("Already closed")]
    assert "booking-1" in to_close and person(0) in to_close and "booking-2" not in to_close
    assert "booking-2" in content[content.index("Already closed") :]
    assert ">Confirm</button>" in content
    for row in (live, closed):
        assert f'name="_selected_action" value="{row.pk}"' in content
    live.refresh_from_db()
    assert live.status == Conversation.Status.ACTIVE
    assert not LogEntry.objects.exists()


def test_confirm_closes_them_and_writes_the_history(
    admin_client: Client, admin_user: Any, conversations: tuple[Conversation, Conversation]
) -> None:
    live, closed = conversations
    numbers = [p.proxy_number.msisdn for p in live.participants.order_by("id")]

    response = admin_client.post(CHANGELIST, select(live, closed, confirm="yes"), follow=True)

    assert response.status_code == HTTPStatus.OK
    assert "Closed 1 conversation(s); 1 already closed." in response.content.decode()
    live.refresh_from_db()
    assert (live.status, live.close_reason) == ("closed", "staff")
    assert not live.participants.filter(active=True).exists()
    closed.refresh_from_db()
    assert closed.close_reason == Conversation.CloseReason.API
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.object_id) == (admin_user.pk, str(live.pk))
    assert entry.change_message == (
        f"Closed: status active → closed, reason staff; proxy numbers freed: "
        f"{numbers[0]}, {numbers[1]}."
    )


def test_an_expired_conversation_is_closed_as_expired(
    admin_client: Client, conversations: tuple[Conversation, Conversation]
) -> None:
    live, _ = conversations
    Conversation.objects.filter(pk=live.pk).update(expires_at=timezone.now() - timedelta(1))

    admin_client.post(CHANGELIST, select(live, confirm="yes"))

    entry = LogEntry.objects.get(object_id=str(live.pk))
    assert entry.change_message.startswith("Closed: status expired → closed, reason expired;")


def test_nothing_to_close_offers_no_confirm(
    admin_client: Client, conversations: tuple[Conversation, Conversation]
) -> None:
    _, closed = conversations
    content = admin_client.post(CHANGELIST, select(closed)).content.decode()
    assert "Already closed" in content and ">Confirm</button>" not in content


def test_staff_without_real_numbers_see_them_masked_on_the_confirmation(
    client: Client, django_user_model: Any, conversations: tuple[Conversation, Conversation]
) -> None:
    live, _ = conversations
    staff_login(client, django_user_model, codenames=OPERATOR)

    content = client.post(CHANGELIST, select(live)).content.decode()

    assert "booking-1" in content
    assert person(0) not in content and mask_number(person(0)) in content
    client.post(CHANGELIST, select(live, confirm="yes"))
    live.refresh_from_db()
    assert live.status == Conversation.Status.CLOSED


@pytest.mark.parametrize("support", [False, True], ids=["viewer", "support group"])
def test_view_only_staff_cannot_close(
    client: Client,
    django_user_model: Any,
    conversations: tuple[Conversation, Conversation],
    support: bool,
) -> None:
    live, _ = conversations
    staff_login(client, django_user_model, codenames=[] if support else VIEWER, support=support)

    assert client.get(CHANGELIST).context["action_form"] is None  # no action offered
    for data in (select(live), select(live, confirm="yes")):
        response = client.post(CHANGELIST, data)
        assert "are you sure?" not in response.content.decode()

    live.refresh_from_db()
    assert live.status == Conversation.Status.ACTIVE
    assert not LogEntry.objects.exists()

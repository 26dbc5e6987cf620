"""Reopening a conversation: `POST /api/conversations/{id}/reopen/` (DESIGN.md §7)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, NumberUse, Participant
from smsproxy.proxy.selectors import conversation_is_live, participant_live_list
from smsproxy.proxy.services.conversations import conversation_close
from smsproxy.proxy.services.reassign import participant_reassign
from smsproxy.proxy.services.reopen import conversation_reopen
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ALICE = "+447700900501"
BOB = "+447700900502"
CAROL = "+447700900503"


def reopen_url(conversation: Conversation) -> str:
    return reverse("conversation-reopen", kwargs={"public_id": str(conversation.public_id)})


def closed(conversation: Conversation) -> Conversation:
    return conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)


def numbers_of(conversation: Conversation) -> dict[str, int]:
    return dict(conversation.participants.values_list("real_number", "proxy_number_id"))


def intros_after(conversation: Conversation, since: int) -> list[str]:
    return list(
        conversation.messages.filter(purpose=Message.Purpose.INTRO, pk__gt=since).values_list(
            "recipient", flat=True
        )
    )


def last_message_id() -> int:
    return Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def assert_loads_exact() -> None:
    counts = Counter(
        Participant.objects.filter(active=True).values_list("proxy_number_id", flat=True)
    )
    for number in VirtualNumber.objects.all():
        assert number.assigned_participants == counts.get(number.pk, 0), number


def test_reopen_keeps_free_numbers_and_introduces_nobody() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = closed(open_between(ALICE, BOB, ttl=600))
    before, mark = numbers_of(conversation), last_message_id()

    reopened = conversation_reopen(conversation=conversation)

    assert conversation_is_live(conversation=reopened)
    assert (reopened.closed_at, reopened.close_reason) == (None, "")
    assert numbers_of(reopened) == before
    assert participant_live_list().filter(conversation=reopened).count() == 2
    assert intros_after(reopened, mark) == []
    assert reopened.expires_at is not None
    assert abs(reopened.expires_at - timezone.now() - timedelta(seconds=600)) < timedelta(seconds=5)
    assert_loads_exact()


def test_a_taken_number_is_replaced_and_only_that_participant_is_introduced() -> None:
    VirtualNumberFactory.create_batch(3)
    conversation = closed(open_between(ALICE, BOB))
    alice_number = numbers_of(conversation)[ALICE]
    # Meanwhile Alice uses her old number with Carol (first is least loaded for her).
    with_carol = open_between(ALICE, CAROL, number_selection="prefer-sticky")
    if numbers_of(with_carol)[ALICE] != alice_number:
        participant_reassign(
            participant=with_carol.participants.get(real_number=ALICE),
            proxy_number=VirtualNumber.objects.get(pk=alice_number),
        )
    mark = last_message_id()

    reopened = conversation_reopen(conversation=conversation)

    after = numbers_of(reopened)
    assert after[ALICE] != alice_number
    assert after[BOB] == numbers_of(conversation)[BOB]
    assert intros_after(reopened, mark) == [ALICE]
    assert NumberUse.objects.filter(real_number=ALICE, proxy_number_id=after[ALICE]).exists()
    assert_loads_exact()


def test_reopen_without_a_free_number_is_pool_exhausted_and_changes_nothing() -> None:
    only = VirtualNumberFactory.create()
    conversation = closed(open_between(ALICE, BOB))
    open_between(ALICE, CAROL)  # Alice's only number is live again elsewhere

    with pytest.raises(ApplicationError) as error:
        conversation_reopen(conversation=conversation)

    assert error.value.code == "pool_exhausted"
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert not conversation.participants.filter(active=True).exists()
    assert VirtualNumber.objects.get(pk=only.pk).assigned_participants == 2
    assert_loads_exact()


def test_reopening_a_live_conversation_changes_nothing() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(ALICE, BOB, ttl=600)
    expires_at, mark = conversation.expires_at, last_message_id()

    reopened = conversation_reopen(conversation=conversation, ttl=60)

    assert (reopened.expires_at, reopened.ttl) == (expires_at, 600)
    assert last_message_id() == mark
    assert_loads_exact()


def test_an_expired_unswept_conversation_is_reopened_with_a_new_ttl() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(ALICE, BOB, ttl=600)
    Conversation.objects.filter(pk=conversation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    before = numbers_of(conversation)

    reopened = conversation_reopen(conversation=conversation, ttl=7200)

    assert conversation_is_live(conversation=reopened)
    assert reopened.ttl == 7200
    assert reopened.expires_at is not None
    assert reopened.expires_at > timezone.now() + timedelta(seconds=7000)
    assert numbers_of(reopened) == before
    assert_loads_exact()


def test_a_conversation_without_ttl_reopens_without_expiry() -> None:
    VirtualNumberFactory.create()
    reopened = conversation_reopen(conversation=closed(open_between(ALICE, BOB)))
    assert (reopened.ttl, reopened.expires_at) == (0, None)


def test_a_reopened_conversation_routes_and_closes_again() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = conversation_reopen(conversation=closed(open_between(ALICE, BOB)))
    closed(conversation)
    assert not conversation.participants.filter(active=True).exists()
    assert_loads_exact()


# --- Through the API ---------------------------------------------------------------------------


def test_api_reopen(api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = closed(open_between(ALICE, BOB, ttl=600))

    response = api_client.post(reopen_url(conversation), {"ttl": 120}, format="json")

    assert response.status_code == HTTPStatus.OK, response.json()
    data = response.json()
    assert (data["status"], data["closed_at"]) == ("active", None)
    assert data["id"] == str(conversation.public_id)
    conversation.refresh_from_db()
    assert conversation.ttl == 120


def test_api_reopen_without_body_and_twice(api_client: APIClient) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = closed(open_between(ALICE, BOB))
    first = api_client.post(reopen_url(conversation))
    second = api_client.post(reopen_url(conversation))
    assert (first.status_code, second.status_code) == (HTTPStatus.OK, HTTPStatus.OK)
    assert first.json() == second.json()


def test_api_reopen_pool_exhausted(api_client: APIClient) -> None:
    VirtualNumberFactory.create()
    conversation = closed(open_between(ALICE, BOB))
    open_between(ALICE, CAROL)
    response = api_client.post(reopen_url(conversation), format="json")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "pool_exhausted"


@pytest.mark.parametrize("ttl", [0, -5, "soon"])
def test_api_reopen_invalid_ttl(api_client: APIClient, ttl: Any) -> None:
    VirtualNumberFactory.create()
    conversation = closed(open_between(ALICE, BOB))
    response = api_client.post(reopen_url(conversation), {"ttl": ttl}, format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] == "validation_error"
    assert "ttl" in response.json()["fields"]


def test_api_reopen_unknown_is_404(api_client: APIClient) -> None:
    url = reverse("conversation-reopen", kwargs={"public_id": "not-a-uuid"})
    assert api_client.post(url).status_code == HTTPStatus.NOT_FOUND

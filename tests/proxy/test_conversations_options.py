"""`intro` and `number_selection` on create (DESIGN.md §7), service level and through the API."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message
from smsproxy.proxy.services.assignment import NumberSelection
from smsproxy.proxy.services.conversations import conversation_close
from smsproxy.proxy.services.reassign import participant_reassign
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between

pytestmark = pytest.mark.django_db

ALICE = "+447700900501"
BOB = "+447700900502"
CAROL = "+447700900503"
LIST_URL = reverse("conversation-list")


def proxy_of(conversation: Conversation, real_number: str) -> VirtualNumber:
    return conversation.participants.get(real_number=real_number).proxy_number


def closed(conversation: Conversation) -> Conversation:
    return conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)


def test_without_intro_no_sms_is_queued() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(ALICE, BOB, intro=False)
    assert conversation.participants.count() == 2
    assert not Message.objects.exists()


def test_by_default_each_participant_is_introduced() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(ALICE, BOB)
    assert set(
        conversation.messages.filter(purpose=Message.Purpose.INTRO).values_list(
            "recipient", flat=True
        )
    ) == {ALICE, BOB}


def test_avoid_sticky_gives_the_same_two_people_other_numbers() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    old = closed(open_between(ALICE, BOB))
    assert (proxy_of(old, ALICE), proxy_of(old, BOB)) == (first, second)

    again = open_between(ALICE, BOB, number_selection=NumberSelection.AVOID_STICKY)

    assert (proxy_of(again, ALICE), proxy_of(again, BOB)) == (second, first)


def test_prefer_sticky_gives_the_same_two_people_their_numbers_again() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    old = closed(open_between(ALICE, BOB))
    assert (proxy_of(old, ALICE), proxy_of(old, BOB)) == (first, second)

    again = open_between(ALICE, BOB, number_selection=NumberSelection.PREFER_STICKY)

    assert (proxy_of(again, ALICE), proxy_of(again, BOB)) == (first, second)


def test_prefer_sticky_takes_the_number_of_the_latest_conversation_with_that_person() -> None:
    first, second, third = VirtualNumberFactory.create_batch(3)
    older = closed(open_between(ALICE, BOB))
    newer = closed(open_between(ALICE, BOB))
    assert proxy_of(older, ALICE) != proxy_of(newer, ALICE)

    again = open_between(ALICE, BOB, number_selection="prefer-sticky")

    assert proxy_of(again, ALICE) == proxy_of(newer, ALICE)
    assert {first, second, third} >= {proxy_of(again, BOB)}


def test_prefer_sticky_falls_back_to_rule_3_when_the_number_is_taken() -> None:
    first, second, third = VirtualNumberFactory.create_batch(3)
    old = closed(open_between(ALICE, BOB))
    sticky = proxy_of(old, ALICE)
    # Alice now uses her sticky number with Carol: it is not free for her.
    with_carol = open_between(ALICE, CAROL, number_selection="prefer-sticky")
    assert proxy_of(with_carol, ALICE) != sticky  # Carol is new: rule 3 avoids it
    participant_reassign(
        participant=with_carol.participants.get(real_number=ALICE), proxy_number=sticky
    )

    again = open_between(ALICE, BOB, number_selection="prefer-sticky")

    assert proxy_of(again, ALICE) != sticky
    assert proxy_of(again, BOB) == proxy_of(old, BOB)
    assert {first, second, third} >= {proxy_of(again, ALICE)}


def test_prefer_sticky_with_a_new_person_is_rule_3() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    old = closed(open_between(ALICE, BOB))
    assert proxy_of(old, ALICE) == first

    new = open_between(ALICE, CAROL, number_selection="prefer-sticky")

    assert proxy_of(new, ALICE) == second  # first was used recently by Alice


def test_an_unknown_selection_is_refused_by_the_service() -> None:
    VirtualNumberFactory.create()
    with pytest.raises(ValueError):
        open_between(ALICE, BOB, number_selection="sticky")
    assert not Conversation.objects.exists()


# --- Through the API ---------------------------------------------------------------------------


def body(**extra: Any) -> dict[str, Any]:
    return {"participants": [{"number": ALICE, "name": "A"}, {"number": BOB, "name": "B"}], **extra}


def test_api_create_without_intro(api_client: APIClient) -> None:
    VirtualNumberFactory.create()
    response = api_client.post(LIST_URL, body(intro=False), format="json")
    assert response.status_code == HTTPStatus.CREATED, response.json()
    assert not Message.objects.exists()


def test_api_create_prefer_sticky(api_client: APIClient) -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    closed(open_between(ALICE, BOB))

    response = api_client.post(LIST_URL, body(number_selection="prefer-sticky"), format="json")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    numbers = {p["number"]: p["proxy_number"] for p in response.json()["participants"]}
    assert numbers == {ALICE: first.msisdn, BOB: second.msisdn}


@pytest.mark.parametrize(
    ("field", "value"),
    [("number_selection", "sticky"), ("number_selection", None), ("intro", "perhaps")],
)
def test_api_refuses_invalid_options(api_client: APIClient, field: str, value: Any) -> None:
    VirtualNumberFactory.create()
    response = api_client.post(LIST_URL, body(**{field: value}), format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    data = response.json()
    assert data["code"] == "validation_error"
    assert field in data["fields"]
    assert not Conversation.objects.exists()

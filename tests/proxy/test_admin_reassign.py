"""Reassign on the conversation page: choose a participant and a number, confirm, done."""

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
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.admin import conversation_reassign
from smsproxy.proxy.models import Conversation, Message, Participant
from tests.factories import VirtualNumberFactory
from tests.proxy.admin_users import OPERATOR, VIEWER, staff_login
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db

ALICE, BOB = person(0), person(1)


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create_batch(2)
    return open_between(ALICE, BOB, reference="booking-5")


@pytest.fixture
def alice(conversation: Conversation) -> Participant:
    return conversation.participants.select_related("proxy_number").get(real_number=ALICE)


def url(conversation: Conversation) -> str:
    return reverse("admin:proxy_conversation_reassign", args=[conversation.pk])


def choose(participant: Participant, number: VirtualNumber, **extra: str) -> dict[str, Any]:
    return {"participant": participant.pk, "proxy_number": number.pk, **extra}


def test_the_button_opens_a_form_offering_participants_and_rented_numbers(
    admin_client: Client, conversation: Conversation
) -> None:
    released = VirtualNumberFactory.create(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )
    change = admin_client.get(reverse("admin:proxy_conversation_change", args=[conversation.pk]))
    assert f'<a href="{url(conversation)}">Reassign</a>' in change.content.decode()

    response = admin_client.get(url(conversation))

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert 'value="Reassign"' in content
    form = response.context["form"]
    assert [label for _value, label in form.fields["participant"].choices] == [
        f"Alice ({ALICE}) via {conversation.participants.get(real_number=ALICE).proxy_number}",
        f"Bob ({BOB}) via {conversation.participants.get(real_number=BOB).proxy_number}",
    ]
    offered = {str(value) for value, _label in form.fields["proxy_number"].choices if value}
    rented = VirtualNumber.objects.filter(status=VirtualNumber.Status.ACTIVE)
    assert offered == {str(number.pk) for number in rented}
    assert released.msisdn not in content


def test_choosing_shows_a_confirmation_and_changes_nothing_yet(
    admin_client: Client, conversation: Conversation, alice: Participant
) -> None:
    spare = VirtualNumberFactory.create()
    was = alice.proxy_number.msisdn
    before = Message.objects.count()

    response = admin_client.post(url(conversation), choose(alice, spare))

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert "are you sure?" in content and ">Confirm</button>" in content
    assert f"will text {spare.msisdn} instead of {was}" in content
    assert f'name="proxy_number" value="{spare.pk}"' in content
    alice.refresh_from_db()
    assert alice.proxy_number.msisdn == was
    assert Message.objects.count() == before
    assert not LogEntry.objects.exists()


def test_confirm_reassigns_introduces_and_writes_the_history(
    admin_client: Client, admin_user: Any, conversation: Conversation, alice: Participant
) -> None:
    spare = VirtualNumberFactory.create()
    was = alice.proxy_number.msisdn

    response = admin_client.post(url(conversation), choose(alice, spare, confirm="yes"))

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse(
        "admin:proxy_conversation_change", args=[conversation.pk]
    )
    alice.refresh_from_db()
    assert alice.proxy_number == spare
    intro = conversation.messages.order_by("-id")[0]
    assert (intro.purpose, intro.sender, intro.recipient) == ("intro", spare.msisdn, ALICE)
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.object_id) == (admin_user.pk, str(conversation.pk))
    assert entry.change_message == f"Reassigned Alice: proxy number {was} → {spare.msisdn}."


def test_a_number_the_person_uses_elsewhere_is_refused_on_the_form(
    admin_client: Client, conversation: Conversation, alice: Participant
) -> None:
    elsewhere = open_between(ALICE, person(5))
    taken = elsewhere.participants.get(real_number=ALICE).proxy_number
    assert taken != alice.proxy_number

    response = admin_client.post(url(conversation), choose(alice, taken, confirm="yes"))

    assert response.status_code == HTTPStatus.OK  # the form again, with the reason
    errors = response.context["form"].errors["proxy_number"]
    assert "already uses" in errors[0] and taken.msisdn in errors[0]
    alice.refresh_from_db()
    assert alice.proxy_number != taken
    assert not LogEntry.objects.exists()


def test_the_current_number_is_refused(
    admin_client: Client, conversation: Conversation, alice: Participant
) -> None:
    response = admin_client.post(url(conversation), choose(alice, alice.proxy_number))
    assert response.context["form"].errors["proxy_number"] == [
        "That is already Alice's proxy number."
    ]


def test_a_refusal_under_lock_brings_back_the_form_with_the_choice_kept(
    admin_client: Client,
    conversation: Conversation,
    alice: Participant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The form's check passed, then the service refused under lock (a concurrent request
    gave Alice that number meanwhile): the reason, the choice kept, nothing saved or logged."""
    elsewhere = open_between(ALICE, person(5))
    taken = elsewhere.participants.get(real_number=ALICE).proxy_number
    # The form's check sees the state before the concurrent request.
    monkeypatch.setattr(conversation_reassign, "participant_reassign_validate", lambda **_: None)
    before = Message.objects.count()

    response = admin_client.post(url(conversation), choose(alice, taken, confirm="yes"))

    assert response.status_code == HTTPStatus.OK
    form = response.context["form"]
    assert "already uses" in form.errors["proxy_number"][0]
    assert (form["participant"].value(), form["proxy_number"].value()) == (
        str(alice.pk),
        str(taken.pk),
    )
    assert "successfully" not in response.content.decode()
    alice.refresh_from_db()
    assert alice.proxy_number != taken
    assert Message.objects.count() == before  # no intro
    assert not LogEntry.objects.exists()


def test_a_conversation_that_no_longer_routes_cannot_be_reassigned(
    admin_client: Client, conversation: Conversation, alice: Participant
) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    change = reverse("admin:proxy_conversation_change", args=[conversation.pk])
    assert url(conversation) not in admin_client.get(change).content.decode()

    spare = VirtualNumberFactory.create()
    response = admin_client.post(url(conversation), choose(alice, spare, confirm="yes"))

    assert response.status_code == HTTPStatus.FOUND
    alice.refresh_from_db()
    assert alice.proxy_number != spare
    assert not LogEntry.objects.exists()


def test_staff_without_real_numbers_see_them_masked_in_choices_and_reasons(
    client: Client, django_user_model: Any, conversation: Conversation, alice: Participant
) -> None:
    staff_login(client, django_user_model, codenames=OPERATOR)
    elsewhere = open_between(ALICE, person(5))
    taken = elsewhere.participants.get(real_number=ALICE).proxy_number

    pages = [
        client.get(url(conversation)),
        client.post(url(conversation), choose(alice, taken)),  # refused: the reason
        client.post(url(conversation), choose(alice, VirtualNumberFactory.create())),  # confirm
    ]

    for response in pages:
        assert response.status_code == HTTPStatus.OK
        content = response.content.decode()
        assert ALICE not in content and BOB not in content
    assert mask_number(ALICE) in pages[0].content.decode()
    assert "already uses" in pages[1].content.decode()
    assert mask_number(ALICE) in pages[2].content.decode()


@pytest.mark.parametrize("support", [False, True], ids=["viewer", "support group"])
def test_view_only_staff_cannot_reassign(
    client: Client,
    django_user_model: Any,
    conversation: Conversation,
    alice: Participant,
    support: bool,
) -> None:
    staff_login(client, django_user_model, codenames=[] if support else VIEWER, support=support)
    spare = VirtualNumberFactory.create()

    assert client.get(url(conversation)).status_code == HTTPStatus.FORBIDDEN
    response = client.post(url(conversation), choose(alice, spare, confirm="yes"))

    assert response.status_code == HTTPStatus.FORBIDDEN
    alice.refresh_from_db()
    assert alice.proxy_number != spare
    assert not LogEntry.objects.exists()

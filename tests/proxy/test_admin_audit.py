"""Every staff action writes one admin history entry, old → new, in the service's transaction.

The services write it when given the acting user (`actor`): a refused or rolled-back action
leaves no entry, an action that committed always has one, and a change made without an actor
(the API, the sweep) writes none.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.test import Client
from django.urls import reverse

from smsproxy.common.audit import audit_change
from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.events.deliver import event_resend
from smsproxy.proxy.models import Conversation, Event, Message
from smsproxy.proxy.outbox.queue import message_retry
from smsproxy.proxy.services.conversations import conversation_close
from smsproxy.proxy.services.reassign import participant_reassign
from smsproxy.proxy.services.reopen import conversation_reopen
from tests.factories import MessageFactory, ParticipantFactory, VirtualNumberFactory
from tests.proxy.admin_users import VIEWER, staff_login
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("operator", password="pw-1", is_staff=True)


@pytest.fixture
def conversation() -> Conversation:
    VirtualNumberFactory.create_batch(3)
    return open_between(person(0), person(1), reference="booking-3")


def close(conversation: Conversation, actor: Any) -> Any:
    return conversation_close(conversation=conversation, reason="staff", actor=actor)


def reopen(conversation: Conversation, actor: Any) -> Any:
    conversation_close(conversation=conversation, reason="api")
    return conversation_reopen(conversation=conversation, actor=actor)


def reassign(conversation: Conversation, actor: Any) -> Any:
    alice = conversation.participants.order_by("id")[0]
    spare = VirtualNumberFactory.create()
    participant_reassign(participant=alice, proxy_number=spare, actor=actor)
    return conversation


def retry(conversation: Conversation, actor: Any) -> Any:
    failed = MessageFactory.create(conversation=conversation, status=Message.Status.FAILED)
    return message_retry(message=failed, actor=actor)


def resend(conversation: Conversation, actor: Any) -> Any:
    event = Event.objects.create(
        type="conversation.closed", data={}, status=Event.Status.FAILED, attempts=3
    )
    return event_resend(event=event, actor=actor)


ACTIONS: dict[str, tuple[Callable[[Conversation, Any], Any], str]] = {
    "close": (close, "Closed: status active → closed, reason staff; proxy numbers freed: "),
    "reopen": (reopen, "Reopened: status closed (reason api) → active, no expiry."),
    "reassign": (reassign, "Reassigned Alice: proxy number "),
    "retry": (retry, "Retried: status failed → queued, attempts 0 → 0, error code - → -."),
    "resend": (resend, "Resent: status failed → pending, attempts 3 → 0; due now."),
}


@pytest.mark.parametrize("name", ACTIONS)
def test_a_staff_action_writes_one_entry_with_old_and_new_values(
    name: str, staff: Any, conversation: Conversation
) -> None:
    action, expected = ACTIONS[name]

    changed = action(conversation, staff)

    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.action_flag) == (staff.pk, CHANGE)
    assert entry.content_type is not None
    assert (entry.content_type.model_class(), entry.object_id) == (type(changed), str(changed.pk))
    assert entry.change_message.startswith(expected), entry.change_message


@pytest.mark.parametrize("name", ACTIONS)
def test_the_same_change_without_an_actor_writes_none(
    name: str, conversation: Conversation
) -> None:
    action, _ = ACTIONS[name]
    action(conversation, None)
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_rolled_back_leaves_no_entry(
    name: str, staff: Any, conversation: Conversation
) -> None:
    action, _ = ACTIONS[name]
    with pytest.raises(RuntimeError), transaction.atomic():
        action(conversation, staff)
        raise RuntimeError("the caller's transaction fails after the action")
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_whose_entry_cannot_be_written_does_not_happen(
    name: str, staff: Any, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change and its entry commit together: no change goes unrecorded."""
    action, _ = ACTIONS[name]

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the history table is unavailable")

    monkeypatch.setattr(LogEntry.objects, "log_actions", refuse)
    numbers = list(conversation.participants.order_by("id").values_list("proxy_number", flat=True))

    with pytest.raises(RuntimeError):
        action(conversation, staff)

    conversation.refresh_from_db()
    unchanged = {
        "close": conversation.status == Conversation.Status.ACTIVE,
        # Its setup closed the conversation first (the API, no actor).
        "reopen": conversation.status == Conversation.Status.CLOSED,
        "reassign": numbers
        == list(conversation.participants.order_by("id").values_list("proxy_number", flat=True)),
        "retry": Message.objects.filter(status=Message.Status.FAILED).count() == 1,
        "resend": Event.objects.filter(status=Event.Status.FAILED).count() == 1,
    }
    assert unchanged[name]


def test_a_refused_action_leaves_no_entry(staff: Any, conversation: Conversation) -> None:
    alice = conversation.participants.get(real_number=person(0))
    elsewhere = open_between(person(0), person(5))
    taken = elsewhere.participants.get(real_number=person(0)).proxy_number
    with pytest.raises(ApplicationError, match="already uses"):
        participant_reassign(participant=alice, proxy_number=taken, actor=staff)
    delivered = MessageFactory.create(status=Message.Status.DELIVERED)
    with pytest.raises(ApplicationError, match="Only failed outbound"):
        message_retry(message=delivered, actor=staff)
    assert not LogEntry.objects.exists()


def test_closing_a_closed_conversation_writes_nothing(
    staff: Any, conversation: Conversation
) -> None:
    conversation_close(conversation=conversation, reason="api")
    close(conversation, staff)
    assert not LogEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_entry_is_only_written_inside_the_change_s_transaction(staff: Any) -> None:
    conversation = Conversation.objects.create(reference="booking-4")
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_change(actor=staff, obj=conversation, change="Closed.")
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("support", [False, True], ids=["viewer", "support group"])
def test_view_only_staff_cannot_resend_events(
    client: Client, django_user_model: Any, support: bool
) -> None:
    event = Event.objects.create(type="conversation.closed", data={}, status=Event.Status.FAILED)
    staff_login(client, django_user_model, codenames=[] if support else VIEWER, support=support)

    response = client.post(
        reverse("admin:proxy_event_changelist"),
        {"action": "resend", "_selected_action": [event.pk]},
    )

    assert response.status_code in {HTTPStatus.OK, HTTPStatus.FOUND}
    event.refresh_from_db()
    assert event.status == Event.Status.FAILED
    assert not LogEntry.objects.exists()


def test_a_reopen_names_a_participant_moved_to_another_number(
    staff: Any, conversation: Conversation
) -> None:
    conversation_close(conversation=conversation, reason="api")
    alice = conversation.participants.select_related("proxy_number").get(real_number=person(0))
    old = alice.proxy_number
    # Meanwhile Alice's old number went to her in another live conversation.
    ParticipantFactory.create(real_number=person(0), proxy_number=old)

    conversation_reopen(conversation=conversation, actor=staff)

    alice.refresh_from_db()
    assert alice.proxy_number != old
    assert LogEntry.objects.get().change_message == (
        "Reopened: status closed (reason api) → active, no expiry; "
        f"Alice's proxy number {old.msisdn} → {alice.proxy_number.msisdn}."
    )

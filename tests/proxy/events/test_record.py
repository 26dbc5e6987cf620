"""Events written in the transaction of each change (DESIGN.md §11), with their payloads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.proxy.events.record import EventType
from smsproxy.proxy.models import Conversation, Event, Message
from smsproxy.proxy.outbox.parts import message_status_refresh
from smsproxy.proxy.outbox.record import fail
from smsproxy.proxy.selectors import conversation_get
from smsproxy.proxy.serializers import ConversationOutputSerializer, MessageOutputSerializer
from smsproxy.proxy.services.conversations import conversation_close, conversations_expire
from smsproxy.proxy.services.inbound import inbound_receive
from smsproxy.proxy.services.reopen import conversation_reopen
from tests.factories import MessageFactory, VirtualNumberFactory
from tests.proxy.fixtures import ALICE, ALICE_PROXY, conversation_end, conversation_make
from tests.proxy.outbox.helpers import sent
from tests.proxy.specs import open_between
from tests.proxy.test_inbound import sms

pytestmark = pytest.mark.django_db


def events(type: str | None = None) -> list[Event]:
    queryset = Event.objects.order_by("pk")
    return list(queryset.filter(type=type) if type else queryset)


def api_conversation(conversation: Conversation) -> dict[str, Any]:
    found = conversation_get(public_id=conversation.public_id)
    assert found is not None
    return dict(ConversationOutputSerializer(found).data)


def test_no_event_is_written_when_events_are_off() -> None:
    conversation = conversation_make()
    inbound_receive(sms=sms("Hello"))
    conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)

    assert not Event.objects.exists()


def test_created_closed_reopened_carry_the_conversation_as_the_api_shows_it(events_on) -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between("+447700900501", "+447700900502", reference="booking-7")
    [created] = events(EventType.CONVERSATION_CREATED)
    assert created.conversation_id == conversation.pk
    assert created.data == api_conversation(conversation)
    assert created.data["status"] == "active" and created.data["close_reason"] is None
    assert len(created.data["participants"]) == 2

    conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    [closed] = events(EventType.CONVERSATION_CLOSED)
    assert closed.data == api_conversation(conversation)
    assert closed.data["close_reason"] == "api" and closed.data["closed_at"]

    conversation_reopen(conversation=conversation)
    [reopened] = events(EventType.CONVERSATION_REOPENED)
    assert reopened.data == api_conversation(conversation)
    assert reopened.data["status"] == "active"


def test_expiry_writes_one_closed_event_per_conversation(events_on) -> None:
    past = timezone.now() - timedelta(minutes=1)
    first = conversation_make(expires_at=past)
    second = conversation_make(alice="+447700901011", bob="+447700901012", expires_at=past)

    assert conversations_expire() == 2

    closed = events(EventType.CONVERSATION_CLOSED)
    assert [event.conversation_id for event in closed] == [first.pk, second.pk]
    assert all(event.data["close_reason"] == "expired" for event in closed)


def test_an_event_rolls_back_with_its_change(events_on) -> None:
    conversation = conversation_make()

    with pytest.raises(RuntimeError), transaction.atomic():
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
        assert events(EventType.CONVERSATION_CLOSED)
        raise RuntimeError("the change fails after the event was written")

    assert not Event.objects.exists()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE


def test_a_routed_sms_is_message_received_as_the_messages_list_shows_it(events_on) -> None:
    conversation = conversation_make()

    result = inbound_receive(sms=sms("On my way"))

    [event] = events()
    assert event.type == EventType.MESSAGE_RECEIVED
    assert event.conversation_id == conversation.pk
    assert result.message is not None
    listed = MessageOutputSerializer(Message.objects.get(pk=result.message.pk)).data
    assert event.data == {
        **listed,
        "conversation": {"id": str(conversation.public_id), "reference": conversation.reference},
    }


def test_a_routed_sms_costs_one_insert_more_with_events(events_on) -> None:
    conversation_make()

    with CaptureQueriesContext(connection) as queries:
        inbound_receive(sms=sms("On my way"))

    statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    if connection.vendor == "postgresql":
        # The route, the inbound row and the forward in one statement; then the event.
        assert statements == ["SAVEPOINT", "WITH", "INSERT", "RELEASE"]
    else:
        # The route (with the partner), the inbound row, the event, the forward.
        assert statements == ["SAVEPOINT", "SELECT", "INSERT", "INSERT", "INSERT", "RELEASE"]


def test_an_unrouted_sms_names_the_last_conversation_of_that_sender_on_that_number(
    events_on,
) -> None:
    older = conversation_make()
    conversation_end(older)
    newer = conversation_make()
    conversation_end(newer)

    inbound_receive(sms=sms("Still there?"))

    [event] = events(EventType.MESSAGE_UNROUTED)
    assert event.data["from"] == ALICE and event.data["to"] == ALICE_PROXY
    assert event.data["text"] == "Still there?"
    assert event.data["last_conversation"] == {
        "id": str(newer.public_id),
        "reference": newer.reference,
    }


def test_an_unrouted_sms_from_a_stranger_has_no_last_conversation(events_on) -> None:
    conversation_make()

    inbound_receive(sms=sms("Who is this?", sender="+447700901099"))

    [event] = events(EventType.MESSAGE_UNROUTED)
    assert event.data["last_conversation"] is None
    assert event.conversation_id is None


def test_an_outbound_message_that_fails_is_message_status(events_on) -> None:
    conversation = conversation_make()
    message = MessageFactory.create(status=Message.Status.SENDING, conversation=conversation)

    with transaction.atomic():
        fail(message, code="6", text="Unroutable")

    [event] = events(EventType.MESSAGE_STATUS)
    assert event.data["id"] == message.pk
    assert event.data["status"] == "failed" and event.data["error_code"] == "6"
    assert event.data["conversation"]["id"] == str(conversation.public_id)


def test_a_delivered_receipt_is_message_status(events_on) -> None:
    message = sent("part-1")
    message.parts.update(status="delivered")

    with transaction.atomic():
        message_status_refresh(message=message)

    [event] = events(EventType.MESSAGE_STATUS)
    assert event.data["status"] == "delivered"
    assert event.data["conversation"] is None  # an outbound message of no conversation


def test_an_intermediate_status_is_no_event(events_on) -> None:
    message = sent("part-1")
    message.parts.update(status="accepted")

    with transaction.atomic():
        message_status_refresh(message=message)

    assert not events(EventType.MESSAGE_STATUS)

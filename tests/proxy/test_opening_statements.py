"""`usage_and_intros_write`: the use history, the numbers' load and the intro SMS of a new
conversation (one statement on PostgreSQL, the separate writes elsewhere), alike on both
databases."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Message, NumberUse
from smsproxy.proxy.services.opening_statements import usage_and_intros_write
from tests.factories import ConversationFactory, VirtualNumberFactory
from tests.proxy.specs import person

pytestmark = pytest.mark.django_db


def _intro(*, sender: str, recipient: str, text: str, conversation: Any) -> Message:
    return Message(
        purpose=Message.Purpose.INTRO,
        sender=sender,
        recipient=recipient,
        text=text,
        conversation=conversation,
    )


def test_history_loads_and_intros_are_written_and_the_intros_dispatched_on_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    VirtualNumber.objects.filter(pk=second.pk).update(assigned_participants=1)
    conversation = ConversationFactory.create()
    earlier, now = timezone.now() - timedelta(hours=1), timezone.now()
    NumberUse.objects.create(real_number=person(0), proxy_number=first, last_used_at=earlier)
    messages = [
        _intro(sender=first.msisdn, recipient=person(0), text="to Ann", conversation=conversation),
        _intro(sender=second.msisdn, recipient=person(1), text="to Bob", conversation=conversation),
    ]

    with (
        mock.patch("smsproxy.proxy.outbox.dispatch.message_dispatch") as dispatch,
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        saved = usage_and_intros_write(
            uses=[(person(0), first.pk, now), (person(1), second.pk, now)],
            changes=Counter({first.pk: 1, second.pk: 1}),
            messages=messages,
        )

    # One round trip on PostgreSQL; the upsert, the load update and the insert elsewhere.
    assert len(queries.captured_queries) == (1 if connection.vendor == "postgresql" else 3)
    assert saved == messages
    assert all(message.pk is not None and not message._state.adding for message in saved)
    stored = {
        row["pk"]: row
        for row in Message.objects.values(
            "pk", "direction", "status", "purpose", "sender", "recipient", "text", "conversation"
        )
    }
    assert [stored[message.pk] for message in saved] == [
        {
            "pk": saved[index].pk,
            "direction": Message.Direction.OUTBOUND,
            "status": Message.Status.QUEUED,
            "purpose": Message.Purpose.INTRO,
            "sender": number.msisdn,
            "recipient": person(index),
            "text": text,
            "conversation": conversation.pk,
        }
        for index, (number, text) in enumerate(((first, "to Ann"), (second, "to Bob")))
    ]
    assert [call.kwargs for call in dispatch.call_args_list] == [
        {"message_id": message.pk, "low_priority": False} for message in saved
    ]
    uses = dict(NumberUse.objects.values_list("real_number", "last_used_at"))
    assert uses == {person(0): now, person(1): now}  # the later of two times is kept
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.assigned_participants, second.assigned_participants) == (1, 2)


def test_without_intros_only_history_and_loads_are_written(
    django_capture_on_commit_callbacks: Any,
) -> None:
    number = VirtualNumberFactory.create()
    now = timezone.now()

    with django_capture_on_commit_callbacks() as callbacks:
        saved = usage_and_intros_write(
            uses=[(person(0), number.pk, now), (person(1), number.pk, now)],
            changes=Counter({number.pk: 2}),
            messages=[],
        )

    assert saved == []
    assert callbacks == []
    assert not Message.objects.exists()
    assert NumberUse.objects.filter(proxy_number=number).count() == 2
    number.refresh_from_db()
    assert number.assigned_participants == 2


def test_intros_of_two_conversations_are_written_as_the_outbox_writes_them() -> None:
    number = VirtualNumberFactory.create()
    first, second = ConversationFactory.create_batch(2)
    now = timezone.now()
    messages = [
        _intro(sender=number.msisdn, recipient=person(0), text="one", conversation=first),
        _intro(sender=number.msisdn, recipient=person(1), text="two", conversation=second),
    ]

    saved = usage_and_intros_write(
        uses=[(person(0), number.pk, now), (person(1), number.pk, now)],
        changes=Counter({number.pk: 2}),
        messages=messages,
    )

    assert [
        Message.objects.filter(pk=message.pk)
        .values_list("conversation", "recipient", "text", "status")
        .get()
        for message in saved
    ] == [
        (first.pk, person(0), "one", Message.Status.QUEUED),
        (second.pk, person(1), "two", Message.Status.QUEUED),
    ]
    number.refresh_from_db()
    assert number.assigned_participants == 2
    assert NumberUse.objects.filter(proxy_number=number).count() == 2

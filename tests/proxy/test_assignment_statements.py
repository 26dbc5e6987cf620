"""`proxy_number_take` (the candidate and its insert, with the conversation for the first
participant: one statement on PostgreSQL, separate ones on SQLite) and the history-and-loads
write, alike on both databases."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, NumberUse, Participant
from smsproxy.proxy.services.assignment import number_usage_record
from smsproxy.proxy.services.assignment_statements import Candidate, proxy_number_take
from tests.factories import VirtualNumberFactory
from tests.proxy.specs import open_between, person

pytestmark = pytest.mark.django_db


def test_the_first_take_inserts_the_conversation_and_the_participant() -> None:
    busy, free = VirtualNumberFactory.create_batch(2)
    VirtualNumber.objects.filter(pk=busy.pk).update(assigned_participants=3)
    now = timezone.now()
    conversation = Conversation(
        reference="booking-7", ttl=60, expires_at=now + timedelta(seconds=60)
    )

    candidate, created = proxy_number_take(
        conversation=conversation, name="Ann", real_number=person(0), country="GB", now=now
    )

    assert candidate == Candidate(number=free, held_by_conversation_id=None)
    assert conversation.pk is not None and not conversation._state.adding
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.public_id, stored.reference, stored.ttl) == (
        conversation.public_id,
        "booking-7",
        60,
    )
    assert stored.expires_at == conversation.expires_at
    assert created is not None
    assert Participant.objects.get(pk=created.pk).conversation_id == conversation.pk
    assert (created.conversation_id, created.proxy_number, created.name) == (
        conversation.pk,
        free,
        "Ann",
    )
    assert Participant.objects.filter(
        pk=created.pk, real_number=person(0), country="GB", active=True, proxy_number=free
    ).exists()


def test_a_route_held_by_an_expired_conversation_is_named_and_nothing_is_inserted() -> None:
    only = VirtualNumberFactory.create()
    me = person(0)
    expired = open_between(me, person(1), ttl=60)
    Conversation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    conversation = Conversation()

    candidate, created = proxy_number_take(
        conversation=conversation, name="", real_number=me, country="GB", now=timezone.now()
    )

    assert candidate == Candidate(number=only, held_by_conversation_id=expired.pk)
    assert created is None
    assert conversation.pk is not None  # inserted: the caller closes the expired one, then inserts
    assert not Participant.objects.filter(conversation_id=conversation.pk).exists()


def test_no_candidate_no_participant() -> None:
    VirtualNumberFactory.create(reserved=True)

    assert proxy_number_take(
        conversation=Conversation(),
        name="",
        real_number=person(0),
        country="GB",
        now=timezone.now(),
    ) == (None, None)
    assert not Participant.objects.exists()


def test_history_and_loads_are_written_together() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    VirtualNumber.objects.filter(pk=second.pk).update(assigned_participants=1)
    earlier, later = timezone.now() - timedelta(hours=1), timezone.now()
    NumberUse.objects.create(real_number=person(0), proxy_number=first, last_used_at=later)

    number_usage_record(
        uses=[(person(0), first.pk, earlier), (person(1), second.pk, later)],
        changes=Counter({first.pk: 2, second.pk: -1}),
    )

    uses = dict(NumberUse.objects.values_list("real_number", "last_used_at"))
    assert uses == {person(0): later, person(1): later}  # the later of two times is kept
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.assigned_participants, second.assigned_participants) == (2, 0)

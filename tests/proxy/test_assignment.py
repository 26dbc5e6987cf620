"""Giving participants proxy numbers (rule 3), conflicts and exhaustion (rule 4), and the
numbers' stored load. Through conversation_create, sandbox provider."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.common.inserts import row_insert
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, NumberUse, Participant
from smsproxy.proxy.selectors import RECENT_USE_WINDOW, participant_live_list
from smsproxy.proxy.services import assignment
from smsproxy.proxy.services.assignment import number_loads_recount
from smsproxy.proxy.services.assignment_statements import Candidate
from smsproxy.proxy.services.conversations import (
    conversation_close,
    conversations_expire,
)
from smsproxy.proxy.services.reassign import (
    participant_reassign,
)
from tests.factories import ParticipantFactory, VirtualNumberFactory
from tests.proxy.specs import assert_closed_as_expired, open_between, person, proxy_of, snapshot

pytestmark = pytest.mark.django_db

US_PERSON = "+15550100123"


# --- Assignment (rule 3) --------------------------------------------------------------------------


def test_two_numbers_serve_ten_conversations_among_twenty_people() -> None:
    pool = VirtualNumberFactory.create_batch(2)
    conversations = [open_between(person(2 * i), person(2 * i + 1)) for i in range(10)]

    assert len(conversations) == 10
    used = set(Participant.objects.values_list("proxy_number_id", flat=True))
    assert used <= {number.pk for number in pool}
    assert participant_live_list().count() == 20
    assert Message.objects.filter(purpose=Message.Purpose.INTRO).count() == 20
    # The least-loaded preference spreads the participants over the pool.
    load = Counter(Participant.objects.values_list("proxy_number_id", flat=True))
    assert sorted(load.values()) == [10, 10]


def test_one_number_serves_both_participants_of_a_conversation() -> None:
    only = VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    assert {p.proxy_number_id for p in conversation.participants.all()} == {only.pk}


def test_a_person_never_gets_a_number_they_use_live_and_the_pool_runs_out() -> None:
    VirtualNumberFactory.create_batch(2)
    busy = person(0)
    first = open_between(busy, person(1))
    second = open_between(busy, person(2))
    assert proxy_of(first, busy) != proxy_of(second, busy)

    before = snapshot()
    with pytest.raises(ApplicationError) as error:
        open_between(busy, person(3))
    assert error.value.code == "pool_exhausted"
    assert error.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert snapshot() == before  # nothing saved: no conversation, participant or intro

    conversation_close(conversation=first, reason=Conversation.CloseReason.API)
    third = open_between(busy, person(3))
    assert proxy_of(third, busy) == proxy_of(first, busy)


def test_reserved_released_and_non_sms_numbers_are_never_assigned() -> None:
    VirtualNumberFactory.create(reserved=True)
    VirtualNumberFactory.create(status=VirtualNumber.Status.RELEASED, released_at=timezone.now())
    VirtualNumberFactory.create(features="VOICE")
    VirtualNumberFactory.create(features="MMS,VOICE")
    with pytest.raises(ApplicationError) as error:
        open_between(person(0), person(1))
    assert error.value.code == "pool_exhausted"

    good = VirtualNumberFactory.create(features="MMS,SMS")
    conversation = open_between(person(0), person(1))
    assert {p.proxy_number_id for p in conversation.participants.all()} == {good.pk}


def test_the_participants_country_is_preferred_over_a_lighter_number() -> None:
    gb = VirtualNumberFactory.create(country="GB")
    us = VirtualNumberFactory.create(msisdn="+15550100999", country="US")
    for index in range(3):  # the GB number is busier
        ParticipantFactory.create(proxy_number=gb, real_number=person(20 + index))

    conversation = open_between(person(0), US_PERSON)
    assert proxy_of(conversation, person(0)) == gb
    assert proxy_of(conversation, US_PERSON) == us
    assert conversation.participants.get(real_number=US_PERSON).country == "US"


def test_a_number_not_used_recently_is_preferred_over_a_lighter_one() -> None:
    recent, other = VirtualNumberFactory.create_batch(2)
    me = person(0)
    old = open_between(me, person(1))
    assert proxy_of(old, me) == recent  # the first of two equally loaded numbers
    conversation_close(conversation=old, reason=Conversation.CloseReason.API)
    for index in range(3):  # the other number is busier
        ParticipantFactory.create(proxy_number=other, real_number=person(20 + index))

    new = open_between(me, person(2))
    # A late reply to the old thread on `recent` must not reach the new partner.
    assert proxy_of(new, me) == other


def test_among_recently_used_numbers_the_least_recently_used_wins() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    me = person(0)
    now = timezone.now()
    NumberUse.objects.create(real_number=me, proxy_number=first, last_used_at=now - timedelta(2))
    NumberUse.objects.create(real_number=me, proxy_number=second, last_used_at=now - timedelta(1))
    ParticipantFactory.create(proxy_number=first, real_number=person(20))  # first is busier, too

    assert proxy_of(open_between(me, person(1)), me) == first


def test_a_use_older_than_the_window_does_not_count_as_recent() -> None:
    old, busy = VirtualNumberFactory.create_batch(2)
    me = person(0)
    long_ago = timezone.now() - RECENT_USE_WINDOW - timedelta(days=1)
    NumberUse.objects.create(real_number=me, proxy_number=old, last_used_at=long_ago)
    NumberUse.objects.create(real_number=me, proxy_number=busy, last_used_at=long_ago)
    ParticipantFactory.create(proxy_number=busy, real_number=person(20))

    assert proxy_of(open_between(me, person(1)), me) == old  # now simply the least loaded


def test_a_reassigned_number_still_counts_as_used_recently() -> None:
    """Issue 10, finding 8: staff moved me from A to B; my next conversation, with someone
    new, must not get A, the number my previous partner's texts came from."""
    a, b, c = VirtualNumberFactory.create_batch(3)
    me = person(0)
    old = open_between(me, person(1))
    assert proxy_of(old, me) == a
    participant_reassign(participant=old.participants.get(real_number=me), proxy_number=b)
    conversation_close(conversation=old, reason=Conversation.CloseReason.API)
    # A and B idle, C the busiest: only the history can keep A away.
    for index in range(3):
        ParticipantFactory.create(proxy_number=c, real_number=person(20 + index))

    new = open_between(me, person(2))

    assert proxy_of(new, me) == c


def test_a_long_use_counts_from_its_end_not_its_start() -> None:
    long_used, other = VirtualNumberFactory.create_batch(2)
    me = person(0)
    old = open_between(me, person(1))
    assert proxy_of(old, me) == long_used
    Participant.objects.filter(conversation=old).update(
        created_at=timezone.now() - RECENT_USE_WINDOW - timedelta(days=5)
    )
    NumberUse.objects.update(last_used_at=timezone.now() - RECENT_USE_WINDOW - timedelta(days=5))
    conversation_close(conversation=old, reason=Conversation.CloseReason.API)  # ended just now
    ParticipantFactory.create(proxy_number=other, real_number=person(20))

    assert proxy_of(open_between(me, person(2)), me) == other


def test_every_way_of_using_a_number_is_recorded() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    me, partner = person(0), person(1)
    conversation = open_between(me, partner)
    uses = dict(NumberUse.objects.values_list("real_number", "proxy_number_id"))
    assert uses == {me: first.pk, partner: second.pk}
    created = NumberUse.objects.get(real_number=me).last_used_at

    participant_reassign(
        participant=conversation.participants.get(real_number=me), proxy_number=second
    )
    assert set(
        NumberUse.objects.filter(real_number=me).values_list("proxy_number_id", flat=True)
    ) == {
        first.pk,
        second.pk,
    }
    Conversation.objects.filter(pk=conversation.pk).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    conversation.refresh_from_db()
    ended = NumberUse.objects.get(real_number=me, proxy_number=second).last_used_at
    assert ended == conversation.closed_at and ended > created
    # The earlier time never overwrites a later one.
    assert NumberUse.objects.get(real_number=me, proxy_number=first).last_used_at >= created


def test_an_expired_unswept_conversation_frees_its_numbers() -> None:
    only = VirtualNumberFactory.create()
    me = person(0)
    expired = open_between(me, person(1), ttl=60)
    Conversation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    # Not swept: still "active" with active participants holding the unique slot.
    assert Participant.objects.filter(conversation=expired, active=True).count() == 2
    assert participant_live_list().count() == 0

    new = open_between(me, person(1))
    assert proxy_of(new, me) == only
    assert_closed_as_expired(expired)


# --- Conflicts (rule 4; the real races run on PostgreSQL in test_conversations_concurrency) ------


def test_a_number_given_to_the_person_after_it_was_chosen_is_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A concurrent request's commit, replayed in order: the first choice was read before
    another request gave that number to this person; the insert skips it (the unique index
    holds the route), nothing is half-written, the next candidate is used."""
    caplog.set_level("INFO", logger=assignment.__name__)
    taken, free = VirtualNumberFactory.create_batch(2)
    me = person(0)
    assert proxy_of(open_between(me, person(1)), me) == taken
    take = assignment.proxy_number_take
    stale_reads = [taken]

    def take_once_stale(**kwargs: Any) -> Any:
        if kwargs["real_number"] == me and stale_reads:
            number = stale_reads.pop()  # read before the other request's commit
            conversation = kwargs["conversation"]
            if conversation.pk is None:  # inserted with the first participant
                row_insert(conversation)
            created = assignment.participant_insert(
                conversation=conversation, name="", real_number=me, country="GB", number=number
            )
            return Candidate(number=number, held_by_conversation_id=None), created
        return take(**kwargs)

    monkeypatch.setattr(assignment, "proxy_number_take", take_once_stale)

    second = open_between(me, person(2))

    assert not stale_reads
    assert proxy_of(second, me) == free
    assert "taken for" in caplog.text and "concurrently" in caplog.text
    assert Participant.objects.filter(real_number=me).count() == 2
    taken.refresh_from_db()
    free.refresh_from_db()
    assert (taken.assigned_participants, free.assigned_participants) == (2, 2)


def test_the_candidate_is_never_a_released_reserved_or_unfit_number(settings: Any) -> None:
    """What rule 3 may give, read by the candidate statement itself (a release that commits
    while it waits for the row lock is read again by it: on PostgreSQL in
    test_conversations_concurrency)."""
    settings.PROXY_VOICE = True
    now = timezone.now()
    VirtualNumberFactory.create(status=VirtualNumber.Status.RELEASED, released_at=now)
    VirtualNumberFactory.create(reserved=True, features="SMS,VOICE")
    VirtualNumberFactory.create(features="SMS")  # no calls while PROXY_VOICE is on
    VirtualNumberFactory.create(features="MMS,SMSX,VOICE")  # "SMSX" is not "SMS"
    fit = VirtualNumberFactory.create(features="MMS,SMS,VOICE")

    candidate = assignment.proxy_number_candidate(real_number=person(0), country="GB", now=now)

    assert candidate is not None
    assert candidate.number == fit
    assert candidate.number.msisdn == fit.msisdn  # a whole instance, its columns converted
    assert candidate.number.rented_at == VirtualNumber.objects.get(pk=fit.pk).rented_at
    assert candidate.held_by_conversation_id is None
    assert (
        assignment.proxy_number_candidate(
            real_number=person(0), country="GB", now=now, exclude_ids=[fit.pk]
        )
        is None
    )


def test_the_candidate_names_the_expired_conversation_holding_its_route() -> None:
    only = VirtualNumberFactory.create()
    me = person(0)
    expired = open_between(me, person(1), ttl=60)
    Conversation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    candidate = assignment.proxy_number_candidate(real_number=me, country="GB", now=timezone.now())

    assert candidate == Candidate(number=only, held_by_conversation_id=expired.pk)


# --- Pool exhausted with auto-provision (rule 4) --------------------------------------------------


def test_auto_provision_rents_exactly_one_number(settings: Any) -> None:
    settings.PROXY_AUTO_PROVISION = True
    conversation = open_between(person(0), person(1))

    assert VirtualNumber.objects.count() == 1
    rented = VirtualNumber.objects.get()
    assert rented.status == VirtualNumber.Status.ACTIVE
    assert rented.country == "GB"
    assert "SMS" in rented.feature_list
    assert {p.proxy_number_id for p in conversation.participants.all()} == {rented.pk}


def test_auto_provision_rents_only_when_the_pool_cannot_serve(settings: Any) -> None:
    settings.PROXY_AUTO_PROVISION = True
    existing = VirtualNumberFactory.create()
    me = person(0)
    open_between(me, person(1))
    assert VirtualNumber.objects.count() == 1  # the pool could serve: nothing rented

    second = open_between(me, person(2))
    assert VirtualNumber.objects.count() == 2
    assert proxy_of(second, me) != existing
    assert proxy_of(second, me).provisioning_job is not None  # rented through a job


def test_without_auto_provision_an_empty_pool_is_exhausted(settings: Any) -> None:
    settings.PROXY_AUTO_PROVISION = False
    with pytest.raises(ApplicationError) as error:
        open_between(person(0), person(1))
    assert error.value.code == "pool_exhausted"
    assert VirtualNumber.objects.count() == 0
    assert snapshot() == (0, 0, 0)


# --- The numbers' stored load (rule 3's "least loaded") -------------------------------------------


def actual_loads() -> dict[int, int]:
    counts = Counter(
        Participant.objects.filter(active=True).values_list("proxy_number_id", flat=True)
    )
    return {number.pk: counts.get(number.pk, 0) for number in VirtualNumber.objects.all()}


def stored_loads() -> dict[int, int]:
    return dict(VirtualNumber.objects.values_list("pk", "assigned_participants"))


def test_the_stored_load_follows_every_change_of_participants() -> None:
    first, second, third = VirtualNumberFactory.create_batch(3)
    conversations = [open_between(person(2 * i), person(2 * i + 1)) for i in range(4)]
    assert sum(stored_loads().values()) == 8
    assert stored_loads() == actual_loads()

    conversation_close(conversation=conversations[0], reason=Conversation.CloseReason.API)
    assert stored_loads() == actual_loads()

    Conversation.objects.filter(pk=conversations[1].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert conversations_expire() == 1
    assert stored_loads() == actual_loads()

    alice = conversations[2].participants.get(real_number=person(4))
    target = next(n for n in (first, second, third) if n.pk != alice.proxy_number_id)
    participant_reassign(participant=alice, proxy_number=target)
    assert stored_loads() == actual_loads()
    assert sum(stored_loads().values()) == 4


def test_the_least_loaded_number_is_read_from_the_stored_load() -> None:
    busy, idle = VirtualNumberFactory.create_batch(2)
    VirtualNumber.objects.filter(pk=busy.pk).update(assigned_participants=5)
    # Neither is used by these people: the stored load alone decides (busy has the lower id).
    conversation = open_between(person(0), person(1))
    assert set(conversation.participants.values_list("proxy_number", flat=True)) == {idle.pk}


def test_recount_repairs_a_stored_load_changed_outside_the_services() -> None:
    VirtualNumberFactory.create_batch(2)
    open_between(person(0), person(1))
    VirtualNumber.objects.update(assigned_participants=7)

    assert number_loads_recount() == 2
    assert stored_loads() == actual_loads()
    assert number_loads_recount() == 0


def test_the_second_participant_sees_the_load_the_first_one_just_added() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(0), person(1))
    # The stored loads are written at the end of the transaction; the pending one still counts.
    assert set(conversation.participants.values_list("proxy_number", flat=True)) == {
        first.pk,
        second.pk,
    }
    assert stored_loads() == {first.pk: 1, second.pk: 1}

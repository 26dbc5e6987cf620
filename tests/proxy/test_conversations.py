"""Opening conversations: validation, proxy-number assignment (rule 3), exhaustion (rule 4),
intro SMS (rule 5), close and expiry (rule 7), staff reassignment. Sandbox provider."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.common.phone import phone_parse
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation, Message, Participant
from smsproxy.proxy.selectors import (
    RECENT_USE_WINDOW,
    conversation_is_live,
    live_conversation_q,
    participant_live_list,
)
from smsproxy.proxy.services import conversations as conversation_services
from smsproxy.proxy.services.conversations import (
    WRITE_ATTEMPTS,
    conversation_close,
    conversation_create,
    conversations_expire,
    participant_reassign,
)
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory

pytestmark = pytest.mark.django_db

US_PERSON = "+15550100123"


def person(index: int) -> str:
    """A real number in the GB range reserved for drama (the sandbox answers it as valid)."""
    return f"+447700900{500 + index:03d}"


def open_between(a: str, b: str, **kwargs: Any) -> Conversation:
    return conversation_create(
        participants=[{"number": a, "name": "Alice"}, {"number": b, "name": "Bob"}], **kwargs
    )


def proxy_of(conversation: Conversation, real_number: str) -> VirtualNumber:
    return conversation.participants.get(real_number=real_number).proxy_number


def snapshot() -> tuple[int, int, int]:
    return (Conversation.objects.count(), Participant.objects.count(), Message.objects.count())


def assert_closed_as_expired(conversation: Conversation) -> None:
    """Closed with reason expired at its expiry time, its participants' routes freed."""
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.close_reason == Conversation.CloseReason.EXPIRED
    assert conversation.closed_at == conversation.expires_at
    assert not conversation.participants.filter(active=True).exists()


# --- Reading numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["+447700900123", "447700900123", "07700 900123", "07700-900-123", "+44 (0)7700 900123"],
)
def test_real_number_parse_accepts_e164_with_or_without_plus_and_national(text: str) -> None:
    parsed = phone_parse(number=text)
    assert parsed is not None
    assert parsed.e164 == "+447700900123"
    assert parsed.country == "GB"


def test_real_number_parse_reads_national_with_the_default_country(settings: Any) -> None:
    settings.PROXY_DEFAULT_COUNTRY = "US"
    parsed = phone_parse(number="(555) 010-0123")
    assert parsed is not None
    assert (parsed.e164, parsed.country) == (US_PERSON, "US")


@pytest.mark.parametrize("text", ["", "   ", "12", "+44 20", "call me", "+4477009001234567890"])
def test_real_number_parse_rejects_impossible_numbers(text: str) -> None:
    assert phone_parse(number=text) is None


# --- Validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_conversation_needs_exactly_two_participants(count: int) -> None:
    VirtualNumberFactory.create_batch(2)
    participants = [{"number": person(i)} for i in range(count)]
    with pytest.raises(ApplicationError) as error:
        conversation_create(participants=participants)
    assert error.value.code == "invalid_participants"
    assert snapshot() == (0, 0, 0)


def test_the_same_person_twice_is_refused_whatever_the_format() -> None:
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        conversation_create(participants=[{"number": "+447700900123"}, {"number": "07700 900123"}])
    assert error.value.code == "invalid_participants"
    assert snapshot() == (0, 0, 0)


def test_an_impossible_number_is_refused_naming_the_participant() -> None:
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        conversation_create(
            participants=[{"number": person(0), "name": "Alice"}, {"number": "12", "name": "Bob"}]
        )
    assert error.value.code == "invalid_number"
    assert "participant 2 (Bob)" in error.value.detail
    assert error.value.fields == {"participants": {"1": {"number": ["Not a valid phone number."]}}}
    assert snapshot() == (0, 0, 0)


def test_a_number_insight_rejects_is_refused() -> None:
    """Possible by its length, but outside any allocated range: the sandbox's insight says no."""
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        open_between("+447700901000", person(1))
    assert error.value.code == "invalid_number"
    assert "participant 1 (Alice)" in error.value.detail
    assert snapshot() == (0, 0, 0)


@pytest.mark.parametrize("name", ["Bob 07700 900456", "Bob +44 7700 900456", "call 447700900456"])
def test_a_name_containing_a_phone_number_is_refused(name: str) -> None:
    """The name is sent to the other participant in the intro SMS (rule 9)."""
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        conversation_create(
            participants=[
                {"number": person(0), "name": "Alice"},
                {"number": person(1), "name": name},
            ]
        )
    assert error.value.code == "invalid_participants"
    assert "participant 2" in error.value.detail
    assert error.value.fields == {
        "participants": {"1": {"name": ["Must not contain a phone number."]}}
    }
    assert snapshot() == (0, 0, 0)


def test_a_name_with_short_digits_is_kept() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = conversation_create(
        participants=[{"number": person(0), "name": "Flat 12"}, {"number": person(1)}]
    )
    assert conversation.participants.filter(name="Flat 12").exists()


@pytest.mark.parametrize("status", [VirtualNumber.Status.ACTIVE, VirtualNumber.Status.RELEASED])
def test_one_of_our_proxy_numbers_is_refused_as_a_participant(status: str) -> None:
    VirtualNumberFactory.create_batch(2)
    ours = VirtualNumberFactory.create(
        msisdn=person(1),
        status=status,
        released_at=timezone.now() if status == VirtualNumber.Status.RELEASED else None,
    )
    with pytest.raises(ApplicationError) as error:
        open_between(person(0), "07700 900501")
    assert error.value.code == "invalid_number"
    assert "participant 2 (Bob)" in error.value.detail
    assert ours.msisdn in error.value.detail
    assert list(error.value.fields["participants"]) == ["1"]
    assert snapshot() == (0, 0, 0)


@pytest.mark.parametrize("ttl", [0, -5, True, 10**12])
def test_ttl_must_be_positive_seconds(ttl: int) -> None:
    VirtualNumberFactory.create_batch(2)
    with pytest.raises(ApplicationError) as error:
        open_between(person(0), person(1), ttl=ttl)
    assert error.value.code == "validation_error"
    assert "ttl" in error.value.fields


# --- Creation -------------------------------------------------------------------------------------


def test_create_assigns_numbers_and_queues_one_intro_per_participant() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(0), "07700 900501", reference="booking-42")

    assert conversation.reference == "booking-42"
    assert conversation.status == Conversation.Status.ACTIVE
    assert conversation.expires_at is None
    alice, bob = conversation.participants.order_by("id")
    assert (alice.name, alice.real_number, alice.country) == ("Alice", person(0), "GB")
    assert (bob.name, bob.real_number, bob.country) == ("Bob", person(1), "GB")
    assert alice.active and bob.active

    intros = list(conversation.messages.order_by("id"))
    assert [(m.direction, m.purpose, m.status, m.sender, m.recipient) for m in intros] == [
        ("outbound", "intro", "queued", alice.proxy_number.msisdn, alice.real_number),
        ("outbound", "intro", "queued", bob.proxy_number.msisdn, bob.real_number),
    ]
    assert "Bob" in intros[0].text and "Alice" not in intros[0].text
    assert "Alice" in intros[1].text and "Bob" not in intros[1].text
    # Rule 9: no real number is ever a sender.
    assert not {m.sender for m in intros} & {person(0), person(1)}


def test_intro_without_a_name_says_your_contact() -> None:
    VirtualNumberFactory.create()
    conversation = conversation_create(
        participants=[{"number": person(0)}, {"number": person(1), "name": "  "}]
    )
    texts = set(conversation.messages.values_list("text", flat=True))
    assert all("your contact" in text for text in texts)


def test_ttl_sets_the_expiry(settings: Any) -> None:
    VirtualNumberFactory.create()
    before = timezone.now()
    conversation = open_between(person(0), person(1), ttl=3600)
    assert conversation.expires_at is not None
    assert before + timedelta(seconds=3600) <= conversation.expires_at
    assert conversation.expires_at <= timezone.now() + timedelta(seconds=3600)

    settings.PROXY_CONVERSATION_TTL = 60
    default = open_between(person(2), person(3))
    assert default.expires_at is not None
    assert default.expires_at - default.created_at < timedelta(seconds=61)

    settings.PROXY_CONVERSATION_TTL = 0
    assert open_between(person(4), person(5)).expires_at is None


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
    for number, closed_ago in ((first, timedelta(days=2)), (second, timedelta(days=1))):
        participant = ParticipantFactory.create(proxy_number=number, real_number=me, active=False)
        Conversation.objects.filter(pk=participant.conversation_id).update(
            status=Conversation.Status.CLOSED,
            closed_at=now - closed_ago,
            close_reason=Conversation.CloseReason.API,
        )
    ParticipantFactory.create(proxy_number=first, real_number=person(20))  # first is busier, too

    assert proxy_of(open_between(me, person(1)), me) == first


def test_a_use_older_than_the_window_does_not_count_as_recent() -> None:
    old, busy = VirtualNumberFactory.create_batch(2)
    me = person(0)
    participant = ParticipantFactory.create(proxy_number=old, real_number=me, active=False)
    Conversation.objects.filter(pk=participant.conversation_id).update(
        status=Conversation.Status.CLOSED,
        closed_at=timezone.now() - RECENT_USE_WINDOW - timedelta(days=1),
        close_reason=Conversation.CloseReason.EXPIRED,
    )
    Participant.objects.filter(pk=participant.pk).update(
        created_at=timezone.now() - RECENT_USE_WINDOW - timedelta(days=2)
    )
    ParticipantFactory.create(proxy_number=busy, real_number=person(20))

    assert proxy_of(open_between(me, person(1)), me) == old  # now simply the least loaded


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
    another request gave that number to this person; the constraint refuses it, the next
    candidate is used."""
    caplog.set_level("INFO", logger=conversation_services.__name__)
    taken, free = VirtualNumberFactory.create_batch(2)
    me = person(0)
    assert proxy_of(open_between(me, person(1)), me) == taken
    choose = conversation_services.proxy_number_candidate_list
    stale_reads = [VirtualNumber.objects.filter(pk=taken.pk)]

    def choose_once_stale(**kwargs: Any) -> Any:
        if kwargs["real_number"] == me and stale_reads:
            return stale_reads.pop()
        return choose(**kwargs)

    monkeypatch.setattr(conversation_services, "proxy_number_candidate_list", choose_once_stale)

    second = open_between(me, person(2))

    assert not stale_reads
    assert proxy_of(second, me) == free
    assert "taken for" in caplog.text and "concurrently" in caplog.text


def test_a_number_released_after_it_was_chosen_is_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A concurrent release, replayed in order: the number was read as active, then released
    before the participant was written; the next candidate is used instead."""
    caplog.set_level("INFO", logger=conversation_services.__name__)
    doomed, spare = VirtualNumberFactory.create_batch(2)
    choose = conversation_services.proxy_number_candidate_list
    stale_reads = [VirtualNumber.objects.filter(pk=doomed.pk)]

    def choose_then_release(**kwargs: Any) -> Any:
        if stale_reads:
            chosen = stale_reads.pop()
            VirtualNumber.objects.filter(pk=doomed.pk).update(
                status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
            )
            return chosen
        return choose(**kwargs)

    monkeypatch.setattr(conversation_services, "proxy_number_candidate_list", choose_then_release)

    conversation = open_between(person(0), person(1))

    assert not stale_reads
    assert set(conversation.participants.values_list("proxy_number", flat=True)) == {spare.pk}
    assert "released meanwhile" in caplog.text


class _LockConflict(Exception):
    """Stands for psycopg's DeadlockDetected: what Django's OperationalError wraps."""

    sqlstate = "40P01"


def _failing_writes(
    monkeypatch: pytest.MonkeyPatch, *, failures: int, cause: Exception
) -> list[int]:
    write = conversation_services._conversation_write
    attempts: list[int] = []

    def write_or_fail(**kwargs: Any) -> Conversation:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise OperationalError("deadlock detected") from cause
        return write(**kwargs)

    monkeypatch.setattr(conversation_services, "_conversation_write", write_or_fail)
    return attempts


def test_a_write_aborted_by_a_lock_conflict_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualNumberFactory.create()
    attempts = _failing_writes(monkeypatch, failures=1, cause=_LockConflict())

    conversation = open_between(person(0), person(1))

    assert attempts == [1, 2]
    assert conversation.participants.count() == 2


def test_repeated_lock_conflicts_give_up_with_a_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualNumberFactory.create()
    attempts = _failing_writes(monkeypatch, failures=99, cause=_LockConflict())

    with pytest.raises(ApplicationError) as error:
        open_between(person(0), person(1))

    assert (error.value.code, error.value.status) == ("assignment_conflict", HTTPStatus.CONFLICT)
    assert len(attempts) == WRITE_ATTEMPTS
    assert snapshot() == (0, 0, 0)


def test_other_database_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualNumberFactory.create()
    attempts = _failing_writes(monkeypatch, failures=99, cause=RuntimeError("disk full"))

    with pytest.raises(OperationalError):
        open_between(person(0), person(1))
    assert attempts == [1]


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


# --- Close and expiry (rule 7) --------------------------------------------------------------------


def test_close_frees_the_numbers_and_is_idempotent() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    closed = conversation_close(conversation=conversation, reason=Conversation.CloseReason.STAFF)
    assert closed.status == Conversation.Status.CLOSED
    assert closed.close_reason == Conversation.CloseReason.STAFF
    assert closed.closed_at is not None
    assert not conversation.participants.filter(active=True).exists()

    again = conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    assert (again.closed_at, again.close_reason) == (closed.closed_at, "staff")


def test_closing_an_expired_conversation_records_its_expiry() -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1), ttl=60)
    expires_at = timezone.now() - timedelta(minutes=5)
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=expires_at)

    closed = conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    assert (closed.close_reason, closed.closed_at) == ("expired", expires_at)


@pytest.mark.parametrize(
    ("status", "expires_in", "live"),
    [
        (Conversation.Status.ACTIVE, None, True),
        (Conversation.Status.ACTIVE, timedelta(seconds=1), True),
        (Conversation.Status.ACTIVE, timedelta(0), False),  # dead from expires_at on
        (Conversation.Status.ACTIVE, -timedelta(seconds=1), False),
        (Conversation.Status.CLOSED, None, False),
        (Conversation.Status.CLOSED, timedelta(hours=1), False),
    ],
)
def test_liveness_in_python_and_in_sql_agree(
    status: str, expires_in: timedelta | None, live: bool
) -> None:
    now = timezone.now()
    closed = status == Conversation.Status.CLOSED
    conversation = ConversationFactory.create(
        status=status,
        expires_at=now + expires_in if expires_in is not None else None,
        closed_at=now if closed else None,
        close_reason=Conversation.CloseReason.STAFF if closed else "",
    )
    in_sql = Conversation.objects.filter(live_conversation_q(now=now), pk=conversation.pk).exists()
    assert conversation_is_live(conversation=conversation, now=now) is live
    assert in_sql is live


def test_close_rejects_an_unknown_reason() -> None:
    conversation = ConversationFactory.create()
    with pytest.raises(ValueError, match="reason"):
        conversation_close(conversation=conversation, reason="bored")


def test_conversations_expire_closes_only_the_expired() -> None:
    VirtualNumberFactory.create()
    now = timezone.now()
    expired = [open_between(person(2 * i), person(2 * i + 1), ttl=60) for i in range(3)]
    running = open_between(person(10), person(11), ttl=3600)
    forever = open_between(person(12), person(13))
    Conversation.objects.filter(pk__in=[c.pk for c in expired]).update(
        expires_at=now - timedelta(seconds=1)
    )
    batches: list[int] = []

    assert conversations_expire(batch_size=2, on_batch=batches.append) == 3
    assert batches == [2, 1]
    for conversation in expired:
        assert_closed_as_expired(conversation)
    assert set(
        Conversation.objects.filter(status=Conversation.Status.ACTIVE).values_list("pk", flat=True)
    ) == {running.pk, forever.pk}
    assert conversations_expire() == 0


# --- Staff reassignment ---------------------------------------------------------------------------


def test_reassign_moves_the_participant_and_introduces_the_new_number() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(0), person(1))
    alice = conversation.participants.get(real_number=person(0))
    target = second if alice.proxy_number == first else first

    participant_reassign(participant=alice, proxy_number=target)
    alice.refresh_from_db()
    assert alice.proxy_number == target
    intro = conversation.messages.order_by("-id").first()
    assert intro is not None
    assert (intro.purpose, intro.sender, intro.recipient) == ("intro", target.msisdn, person(0))
    assert "Bob" in intro.text


def test_reassign_refuses_a_number_the_person_uses_in_another_live_conversation() -> None:
    VirtualNumberFactory.create_batch(2)
    me = person(0)
    first = open_between(me, person(1))
    second = open_between(me, person(2))
    participant = second.participants.get(real_number=me)

    with pytest.raises(ApplicationError) as error:
        participant_reassign(participant=participant, proxy_number=proxy_of(first, me))
    assert error.value.code == "proxy_number_in_use"
    participant.refresh_from_db()
    assert participant.proxy_number == proxy_of(second, me)


def test_reassign_refuses_a_closed_conversation_and_a_released_number() -> None:
    VirtualNumberFactory.create()
    released = VirtualNumberFactory.create(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )
    conversation = open_between(person(0), person(1))
    participant = conversation.participants.first()
    assert participant is not None
    with pytest.raises(ApplicationError) as error:
        participant_reassign(participant=participant, proxy_number=released)
    assert error.value.code == "number_not_active"

    spare = VirtualNumberFactory.create()
    conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    participant.refresh_from_db()
    with pytest.raises(ApplicationError) as error:
        participant_reassign(participant=participant, proxy_number=spare)
    assert error.value.code == "conversation_closed"


def test_reassign_refuses_a_number_released_after_it_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    participant = conversation.participants.get(real_number=person(0))
    target = VirtualNumberFactory.create()
    validate = conversation_services.participant_reassign_validate

    def validate_then_release(**kwargs: Any) -> None:
        # The admin form checked the number; a release commits before the save.
        validate(**kwargs)
        VirtualNumber.objects.filter(pk=target.pk).update(
            status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
        )

    monkeypatch.setattr(
        conversation_services, "participant_reassign_validate", validate_then_release
    )
    before = snapshot()

    with pytest.raises(ApplicationError) as error:
        participant_reassign(participant=participant, proxy_number=target)
    assert error.value.code == "number_not_active"
    participant.refresh_from_db()
    assert participant.proxy_number != target
    assert snapshot() == before


def test_reassign_closes_an_expired_holder_of_the_route() -> None:
    held, spare = VirtualNumberFactory.create_batch(2)
    me = person(0)
    old = ParticipantFactory.create(real_number=me, proxy_number=held).conversation
    Conversation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    participant = ParticipantFactory.create(real_number=me, proxy_number=spare)

    participant_reassign(participant=participant, proxy_number=held)
    participant.refresh_from_db()
    assert participant.proxy_number == held
    old.refresh_from_db()
    assert (old.status, old.close_reason) == ("closed", "expired")


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

    assert conversation_services.number_loads_recount() == 2
    assert stored_loads() == actual_loads()
    assert conversation_services.number_loads_recount() == 0


def test_the_second_participant_sees_the_load_the_first_one_just_added() -> None:
    first, second = VirtualNumberFactory.create_batch(2)
    conversation = open_between(person(0), person(1))
    # The stored loads are written at the end of the transaction; the pending one still counts.
    assert set(conversation.participants.values_list("proxy_number", flat=True)) == {
        first.pk,
        second.pk,
    }
    assert stored_loads() == {first.pk: 1, second.pk: 1}

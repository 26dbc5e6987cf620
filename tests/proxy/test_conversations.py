"""Opening conversations (intro SMS, rule 5), retrying a write after a lock conflict, close and
expiry (rule 7), staff reassignment. Sandbox provider.

Assignment is tested in test_assignment, the participants' checks in test_participants and the
API's parsing of a request in test_serializers."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Conversation
from smsproxy.proxy.selectors import conversation_is_live, live_conversation_q
from smsproxy.proxy.services import conversations as conversation_services
from smsproxy.proxy.services import reassign as reassign_services
from smsproxy.proxy.services.conversations import (
    conversation_close,
    conversation_create,
    conversations_expire,
)
from smsproxy.proxy.services.reassign import (
    participant_reassign,
)
from smsproxy.proxy.services.writes import WRITE_ATTEMPTS
from tests.factories import ConversationFactory, ParticipantFactory, VirtualNumberFactory
from tests.proxy.specs import (
    assert_closed_as_expired,
    open_between,
    participant_specs,
    person,
    proxy_of,
    snapshot,
)

pytestmark = pytest.mark.django_db


# --- Creation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_conversation_needs_exactly_two_participants(count: int) -> None:
    """The API answers `invalid_participants` (test_serializers); the service refuses too."""
    VirtualNumberFactory.create_batch(2)
    participants = participant_specs(*(person(i) for i in range(count)))
    with pytest.raises(ValueError, match="two participants"):
        conversation_create(participants=participants)
    assert snapshot() == (0, 0, 0)


def test_a_name_is_stored_and_introduced_as_given() -> None:
    VirtualNumberFactory.create_batch(2)
    conversation = conversation_create(
        participants=participant_specs((person(0), "Flat 12"), person(1))
    )
    assert conversation.participants.filter(name="Flat 12").exists()
    assert conversation.messages.filter(recipient=person(1), text__contains="Flat 12").exists()


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
    conversation = conversation_create(participants=participant_specs(person(0), person(1)))
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


# --- A write aborted by a lock conflict runs again ------------------------------------------------


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


def _failing_closes(
    monkeypatch: pytest.MonkeyPatch, *, failures: int, cause: Exception
) -> list[int]:
    """The close's write aborted `failures` times after it locked the conversation."""
    deactivate = conversation_services.participants_deactivate
    attempts: list[int] = []

    def deactivate_or_fail(**kwargs: Any) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise OperationalError("deadlock detected") from cause
        deactivate(**kwargs)

    monkeypatch.setattr(conversation_services, "participants_deactivate", deactivate_or_fail)
    return attempts


def test_a_close_aborted_by_a_lock_conflict_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    attempts = _failing_closes(monkeypatch, failures=1, cause=_LockConflict())

    closed = conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)

    assert attempts == [1, 2]
    assert (closed.status, closed.close_reason) == ("closed", "api")
    assert not conversation.participants.filter(active=True).exists()
    assert VirtualNumber.objects.get().assigned_participants == 0


def test_repeated_lock_conflicts_on_close_give_up_with_a_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    attempts = _failing_closes(monkeypatch, failures=99, cause=_LockConflict())

    with pytest.raises(ApplicationError) as error:
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)

    assert (error.value.code, error.value.status) == ("close_conflict", HTTPStatus.CONFLICT)
    assert len(attempts) == WRITE_ATTEMPTS
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.ACTIVE  # every attempt rolled back
    assert conversation.participants.filter(active=True).count() == 2


def test_other_database_errors_on_close_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualNumberFactory.create()
    conversation = open_between(person(0), person(1))
    attempts = _failing_closes(monkeypatch, failures=99, cause=RuntimeError("disk full"))

    with pytest.raises(OperationalError):
        conversation_close(conversation=conversation, reason=Conversation.CloseReason.API)
    assert attempts == [1]


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
    validate = reassign_services.participant_reassign_validate

    def validate_then_release(**kwargs: Any) -> None:
        # The admin form checked the number; a release commits before the save.
        validate(**kwargs)
        VirtualNumber.objects.filter(pk=target.pk).update(
            status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
        )

    monkeypatch.setattr(reassign_services, "participant_reassign_validate", validate_then_release)
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

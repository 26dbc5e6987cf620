"""The claim (outbox/claim.py): one UPDATE … RETURNING lets exactly one worker through."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.checks import Tags, run_checks
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.claim import claim_database_check, message_claim
from tests.factories import MessageFactory
from tests.proxy.fixtures import BOB, BOB_PROXY
from tests.proxy.outbox.helpers import queued, statements

pytestmark = pytest.mark.django_db


def test_a_second_claim_does_nothing() -> None:
    message = queued()
    now = timezone.now()

    assert message_claim(message_id=message.pk, now=now) is not None
    assert message_claim(message_id=message.pk, now=timezone.now()) is None

    message.refresh_from_db()
    assert (message.status, message.attempts, message.claimed_at) == (
        Message.Status.SENDING,
        1,
        now,
    )
    assert message.updated_at == now


@pytest.mark.django_db(transaction=True)
def test_the_claim_is_committed_when_it_returns() -> None:
    """Another connection sees the claim at once: no transaction is left open by it."""
    message = queued()
    seen: list[str] = []

    def read() -> None:
        try:
            seen.append(Message.objects.values_list("status", flat=True).get(pk=message.pk))
        finally:
            connections.close_all()

    assert message_claim(message_id=message.pk, now=timezone.now()) is not None
    reader = threading.Thread(target=read)
    reader.start()
    reader.join(30)

    assert seen == [Message.Status.SENDING]


def test_the_claim_reads_back_the_fields_of_the_send() -> None:
    message = queued(attempts=2, max_attempts=5, text="Où es-tu ? 👋")
    now = timezone.now()

    claim = message_claim(message_id=message.pk, now=now)

    assert claim is not None and claim.sender_is_ours
    claimed = claim.message
    assert (claimed.pk, claimed.sender, claimed.recipient, claimed.text) == (
        message.pk,
        BOB_PROXY,
        BOB,
        "Où es-tu ? 👋",
    )
    assert (claimed.status, claimed.attempts, claimed.max_attempts, claimed.claimed_at) == (
        Message.Status.SENDING,
        3,
        5,
        now,
    )
    assert message_claim(message_id=message.pk, now=now) is None


def test_a_claim_that_does_not_match_returns_nothing_and_changes_nothing() -> None:
    later = timezone.now() + timedelta(minutes=1)
    not_due = queued(next_attempt_at=later)
    inbound = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED
    )

    assert message_claim(message_id=not_due.pk, now=timezone.now()) is None
    assert message_claim(message_id=inbound.pk, now=timezone.now()) is None
    assert message_claim(message_id=not_due.pk + inbound.pk + 1000, now=timezone.now()) is None

    not_due.refresh_from_db()
    assert (not_due.status, not_due.attempts, not_due.claimed_at) == ("queued", 0, None)
    # Due exactly now: claimed.
    assert message_claim(message_id=not_due.pk, now=later) is not None


def test_the_claim_is_one_statement() -> None:
    message = queued()

    with CaptureQueriesContext(connection) as context:
        assert message_claim(message_id=message.pk, now=timezone.now()) is not None

    assert len(statements(context)) == 1


@pytest.mark.parametrize("status", ["sent", "delivered", "failed"])
def test_only_queued_messages_are_claimed(status: str) -> None:
    message = queued(status=status)

    assert message_claim(message_id=message.pk, now=timezone.now()) is None


def test_the_database_check_accepts_a_database_with_update_returning() -> None:
    assert claim_database_check(None) == []


@pytest.mark.parametrize(
    "change", [{"features.can_return_columns_from_insert": False}, {"vendor": "mysql"}]
)
def test_the_database_check_refuses_a_database_the_claim_cannot_run_on(
    monkeypatch, change: dict[str, object]
) -> None:
    """SQLite before 3.35 (no UPDATE … RETURNING), MariaDB/MySQL: no SMS could be sent."""
    for path, value in change.items():
        owner, _, name = path.rpartition(".")
        monkeypatch.setattr(connection.features if owner else connection, name, value)

    errors = [
        error
        for error in run_checks(tags=[Tags.compatibility])
        if (error.id or "").startswith("smsproxy.")
    ]

    assert [error.id for error in errors] == ["smsproxy.E001"]
    assert "UPDATE … RETURNING" in errors[0].msg

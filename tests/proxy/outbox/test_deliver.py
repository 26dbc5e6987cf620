"""Delivery of queued messages (DESIGN.md §6), with Vonage faked at the HTTP boundary."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.deliver import (
    INTERNAL_ERROR,
    RECIPIENT_NOT_MOBILE,
    SENDER_NOT_PROXY,
    Outcome,
    message_deliver,
)
from smsproxy.proxy.outbox.record import RETRY_BASE_DELAY, RETRY_MAX_DELAY, retry_delay
from tests.factories import ConversationFactory, MessageFactory
from tests.proxy.fixtures import ALICE, BOB, BOB_PROXY, SMS_SEND_URL, vonage_answer
from tests.proxy.outbox.helpers import answer_ok, answer_status, queued, sent_form, statements

pytestmark = pytest.mark.django_db


# --- success -------------------------------------------------------------------------------------


def test_status_0_sends_and_records_the_part(
    vonage: responses.RequestsMock,
) -> None:
    message = queued()
    answer_ok(vonage, message)

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.SENT
    form = sent_form(vonage)
    assert form["from"] == BOB_PROXY.removeprefix("+")
    assert form["to"] == BOB.removeprefix("+")
    assert form["text"] == "Where are you?"
    assert form["type"] == "text"
    assert form["client-ref"] == str(message.pk)
    assert form["callback"] == "https://proxy.example.com/webhooks/vonage/delivery-receipt/"
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 1
    assert message.sent_at is not None
    assert message.price == Decimal("0.0333")
    [part] = message.parts.all()
    assert (part.vonage_message_id, part.status, part.network) == (
        "0C0000001234567B",
        "sent",
        "23410",
    )


def test_every_part_of_a_long_message_is_recorded(vonage: responses.RequestsMock) -> None:
    message = queued(text="x" * 200)
    answer_ok(vonage, message, "sms_send_two_parts")

    message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert list(message.parts.values_list("vonage_message_id", flat=True)) == [
        "0C0000001234567B",
        "0C0000001234567C",
    ]
    assert message.price == Decimal("0.0666")


def test_unicode_is_sent_as_unicode(vonage: responses.RequestsMock) -> None:
    message = queued(text="Привет 👋")
    answer_ok(vonage, message)

    message_deliver(message_id=message.pk)

    form = sent_form(vonage)
    assert form["type"] == "unicode"
    assert form["text"] == "Привет 👋"


def test_a_sender_that_is_not_our_number_is_never_used(
    vonage: responses.RequestsMock,
) -> None:
    message = MessageFactory.create(sender=ALICE, recipient=BOB)  # a real number as sender

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    assert len(vonage.calls) == 0
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", SENDER_NOT_PROXY)


def test_a_sender_we_released_is_never_used(
    vonage: responses.RequestsMock,
) -> None:
    """A number whose rental is cancelled may already be someone else's: nothing leaves from it,
    also when the message was queued before the release."""
    message = queued()
    VirtualNumber.objects.filter(msisdn=message.sender).update(
        status=VirtualNumber.Status.RELEASED, released_at=timezone.now()
    )

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    assert len(vonage.calls) == 0
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", SENDER_NOT_PROXY)


@pytest.mark.parametrize(
    "recipient",
    [
        "+881612345678",  # non-geographic (satellite): priced like premium, no phone receives it
        "+882345678901",  # non-geographic (international networks)
        "+18005550100",  # toll-free
        "+442071234567",  # a landline
    ],
)
def test_a_recipient_that_cannot_receive_sms_is_never_sent_to(
    vonage: responses.RequestsMock, recipient: str
) -> None:
    message = queued(recipient=recipient)

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    assert len(vonage.calls) == 0
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", RECIPIENT_NOT_MOBILE)
    assert recipient not in result.detail  # the detail is logged: masked


def test_a_sent_message_costs_four_statements(
    vonage: responses.RequestsMock,
) -> None:
    """The claim, then the UPDATE to sent, the SELECT of existing parts and their INSERT."""
    message = queued()
    answer_ok(vonage, message)

    with CaptureQueriesContext(connection) as context:
        assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    sql = statements(context)
    assert len(sql) == 4, sql
    assert sql[-1].startswith("INSERT")


def test_the_result_carries_the_sent_message(vonage: responses.RequestsMock) -> None:
    conversation = ConversationFactory.create()
    message = queued(conversation=conversation)
    answer_ok(vonage, message)

    result = message_deliver(message_id=message.pk)

    assert result.message is not None
    stored = Message.objects.get(pk=message.pk)
    for field in ("status", "sent_at", "price", "sender", "recipient", "text", "attempts"):
        assert getattr(result.message, field) == getattr(stored, field), field
    # Fields the claim did not read are loaded when asked for.
    assert result.message.conversation_id == conversation.pk
    assert result.message.purpose == stored.purpose


def test_a_message_being_sent_is_not_sent_again(vonage: responses.RequestsMock) -> None:
    message = queued()
    message_claim(message_id=message.pk, now=timezone.now())

    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED
    assert len(vonage.calls) == 0


def test_inbound_messages_are_never_claimed() -> None:
    message = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED
    )

    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_vonage_is_called(vonage: responses.RequestsMock) -> None:
    message = queued()
    in_transaction = []

    def answer(request):
        in_transaction.append(connection.in_atomic_block)
        return (
            200,
            {},
            '{"message-count": "1", "messages": [{"status": "0", "message-id": "0C09"}]}',
        )

    vonage.add_callback(
        responses.POST, SMS_SEND_URL, callback=answer, content_type="application/json"
    )

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    assert in_transaction == [False]


# --- transient failures --------------------------------------------------------------------------


def test_transient_status_is_retried_later(vonage: responses.RequestsMock) -> None:
    status, text = "5", "Internal Error"
    message = queued()
    answer_status(vonage, status, text)
    before = timezone.now()

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.RETRY
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    assert (message.error_code, message.error_text) == (status, text)
    assert message.claimed_at is None
    assert message.next_attempt_at is not None
    wait = message.next_attempt_at - before
    assert RETRY_BASE_DELAY / 2 <= wait <= RETRY_BASE_DELAY + timedelta(seconds=1)


@pytest.mark.parametrize("http_status", [500, 503])
def test_http_5xx_is_retried(vonage: responses.RequestsMock, http_status: int) -> None:
    message = queued()
    vonage.add(responses.POST, SMS_SEND_URL, status=http_status, json={"error": "try later"})

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.RETRY
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.error_code == str(http_status)


def test_a_timeout_is_retried(vonage: responses.RequestsMock) -> None:
    message = queued()
    vonage.add(responses.POST, SMS_SEND_URL, body=requests.exceptions.ReadTimeout("read timed out"))

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.RETRY
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.error_code == "timeout"


def test_a_retried_message_is_not_sent_before_it_is_due(
    vonage: responses.RequestsMock,
) -> None:
    message = queued()
    answer_status(vonage, "5", "Internal Error")
    message_deliver(message_id=message.pk)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED
    assert len(vonage.calls) == 1

    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    answer_ok(vonage, message)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("sent", 2, "")


def test_transient_failures_give_up_after_max_attempts(vonage: responses.RequestsMock) -> None:
    message = queued(attempts=2, max_attempts=3)
    answer_status(vonage, "5", "Internal Error")

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 3
    assert message.error_code == "5"
    assert "gave up after 3 attempts" in message.error_text


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8, 20])
def test_retry_delay_is_jittered_exponential_and_capped(attempts: int) -> None:
    step = min(RETRY_BASE_DELAY * 2 ** (attempts - 1), RETRY_MAX_DELAY)

    delays = {retry_delay(attempts=attempts) for _ in range(20)}

    assert all(step / 2 <= delay <= step for delay in delays)
    assert len(delays) > 1


# --- permanent failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,text",
    [("4", "Bad Credentials"), ("9", "Partner Quota Violation"), ("7", "Number Barred")],
)
def test_permanent_status_fails_with_vonages_code_and_text(
    vonage: responses.RequestsMock, status: str, text: str
) -> None:
    message = queued()
    answer_status(vonage, status, text)

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_text) == ("failed", status, text)
    assert message.next_attempt_at is None
    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED
    assert len(vonage.calls) == 1


def test_an_unexpected_error_fails_the_message_without_retrying(monkeypatch, settings) -> None:
    settings.SMS_RATE_LIMIT = 0

    class Broken:
        def send_sms(self, **kwargs):
            raise RuntimeError("provider bug")

    monkeypatch.setattr(delivery, "get_provider", Broken)
    message = queued()

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    message.refresh_from_db()
    assert message.error_code == INTERNAL_ERROR
    assert "provider bug" in message.error_text


def test_accepted_parts_of_a_partly_throttled_send_are_kept_but_superseded(
    vonage: responses.RequestsMock,
) -> None:
    message = queued(text="x" * 200)
    answer = vonage_answer("sms_send_two_parts", CLIENT_REF=str(message.pk))
    answer["messages"][1] = {"status": "1", "error-text": "Throughput Rate Exceeded"}
    vonage.add(responses.POST, SMS_SEND_URL, json=answer)

    assert message_deliver(message_id=message.pk).outcome == Outcome.RETRY

    [part] = MessagePart.objects.all()
    assert part.superseded
    assert part.message == message

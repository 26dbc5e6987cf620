"""Delivery of queued messages (DESIGN.md §6), with Vonage faked at the HTTP boundary."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.core.checks import Tags, run_checks
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.gateway.base import SendResult, SentPart
from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.numbers.models import VirtualNumber
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox.claim import claim_database_check, message_claim
from smsproxy.proxy.outbox.deliver import (
    CLAIM_RESTAMP_AFTER,
    INTERNAL_ERROR,
    INTERRUPTED,
    RETRY_BASE_DELAY,
    RETRY_MAX_DELAY,
    SENDER_NOT_PROXY,
    STALE_SENDING_AFTER,
    Outcome,
    message_deliver,
    outbox_recover_stale,
    retry_delay,
)
from smsproxy.proxy.outbox.receipts import receipt_record
from tests.factories import ConversationFactory, MessageFactory
from tests.proxy.fixtures import ALICE, BOB, BOB_PROXY, SMS_SEND_URL, number, vonage_answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def vonage(settings, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = "api-secret-for-tests"
    settings.VONAGE_REST_HOST = "rest.nexmo.com"
    settings.SMS_RATE_LIMIT = 0
    return mocked_responses


def statements(context: CaptureQueriesContext) -> list[str]:
    """The SQL run, without transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [
        query["sql"]
        for query in context.captured_queries
        if not query["sql"].upper().startswith(control)
    ]


def queued(**fields) -> Message:
    defaults = {"sender": BOB_PROXY, "recipient": BOB, "text": "Where are you?"}
    message = MessageFactory.create(**{**defaults, **fields})
    number(message.sender)
    return message


def answer_ok(vonage: responses.RequestsMock, message: Message, name: str = "sms_send_ok") -> None:
    vonage.add(responses.POST, SMS_SEND_URL, json=vonage_answer(name, CLIENT_REF=str(message.pk)))


def answer_status(vonage: responses.RequestsMock, status: str, text: str) -> None:
    vonage.add(
        responses.POST,
        SMS_SEND_URL,
        json=vonage_answer("sms_send_error", STATUS=status, ERROR_TEXT=text),
    )


def sent_form(vonage: responses.RequestsMock, index: int = 0) -> dict[str, str]:
    body = vonage.calls[index].request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {key: values[0] for key, values in parse_qs(text).items()}


# --- success --------------------------------------------------------------------------------------


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


# --- transient failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,text", [("1", "Throughput Rate Exceeded"), ("5", "Internal Error")]
)
def test_transient_status_is_retried_later(
    vonage: responses.RequestsMock, status: str, text: str
) -> None:
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


@pytest.mark.parametrize("http_status", [429, 500, 503])
def test_http_429_and_5xx_are_retried(vonage: responses.RequestsMock, http_status: int) -> None:
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
    answer_status(vonage, "1", "Throughput Rate Exceeded")
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
    answer_status(vonage, "1", "Throughput Rate Exceeded")

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.FAILED
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 3
    assert message.error_code == "1"
    assert "gave up after 3 attempts" in message.error_text


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8, 20])
def test_retry_delay_is_jittered_exponential_and_capped(attempts: int) -> None:
    step = min(RETRY_BASE_DELAY * 2 ** (attempts - 1), RETRY_MAX_DELAY)

    delays = {retry_delay(attempts=attempts) for _ in range(20)}

    assert all(step / 2 <= delay <= step for delay in delays)
    assert len(delays) > 1


# --- permanent failures ---------------------------------------------------------------------------


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


# --- the claim ------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("status", ["sent", "delivered", "failed"])
def test_only_queued_messages_are_claimed(status: str) -> None:
    message = queued(status=status)

    assert message_claim(message_id=message.pk, now=timezone.now()) is None


def test_inbound_messages_are_never_claimed() -> None:
    message = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED
    )

    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED


# --- a row stuck in "sending" ---------------------------------------------------------------------


def stuck(**fields) -> Message:
    message = queued(**fields)
    message_claim(message_id=message.pk, now=timezone.now())
    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - STALE_SENDING_AFTER - timedelta(seconds=1)
    )
    return message


def test_a_recently_claimed_row_is_left_alone() -> None:
    message = queued()
    message_claim(message_id=message.pk, now=timezone.now())

    assert outbox_recover_stale() == []
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING


def test_a_stuck_row_without_parts_is_requeued_once_then_failed(
    vonage: responses.RequestsMock,
) -> None:
    message = stuck()

    [recovered] = outbox_recover_stale()

    assert recovered.pk == message.pk
    message.refresh_from_db()
    assert (message.status, message.error_code, message.claimed_at) == ("queued", INTERRUPTED, None)
    assert message.attempts == 1

    # The worker dies again on the re-send.
    message_claim(message_id=message.pk, now=timezone.now())
    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - STALE_SENDING_AFTER - timedelta(seconds=1)
    )
    outbox_recover_stale()

    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", INTERRUPTED)
    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED
    assert len(vonage.calls) == 0


def test_a_requeued_stuck_row_is_sent_by_the_next_delivery(vonage: responses.RequestsMock) -> None:
    message = stuck()
    outbox_recover_stale()
    answer_ok(vonage, message)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("sent", 2, "")


def test_a_stuck_row_with_no_attempts_left_is_failed() -> None:
    message = stuck(attempts=7, max_attempts=8)

    outbox_recover_stale()

    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", INTERRUPTED)


def test_a_stuck_row_whose_receipt_arrived_is_marked_sent() -> None:
    message = stuck()
    receipt_record(
        receipt=DeliveryReceipt(
            vonage_message_id="0C01", status="delivered", client_ref=str(message.pk)
        )
    )

    outbox_recover_stale()

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


# --- receipts racing the send ---------------------------------------------------------------------


def test_a_receipt_that_arrives_during_the_send_is_kept(monkeypatch, settings) -> None:
    """The sandbox and Vonage may answer with a receipt before the send's result is written."""
    settings.SMS_RATE_LIMIT = 0
    message = queued()

    class ReceiptFirst:
        def send_sms(self, *, client_ref: str, **kwargs) -> SendResult:
            receipt_record(
                receipt=DeliveryReceipt(
                    vonage_message_id="0C01", status="delivered", client_ref=client_ref
                )
            )
            return SendResult(parts=(SentPart(message_id="0C01", price=Decimal("0.05")),))

    monkeypatch.setattr(delivery, "get_provider", ReceiptFirst)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    [part] = message.parts.all()
    assert (part.status, part.price) == ("delivered", Decimal("0.05"))


def test_a_receipt_for_one_part_of_two_before_the_send_result(monkeypatch, settings) -> None:
    """The receipt created the first part (without price or network): the send completes it."""
    settings.SMS_RATE_LIMIT = 0
    message = queued(text="x" * 200)

    class FirstPartReceiptFirst:
        def send_sms(self, *, client_ref: str, **kwargs) -> SendResult:
            receipt_record(
                receipt=DeliveryReceipt(
                    vonage_message_id="0C0A", status="delivered", client_ref=client_ref
                )
            )
            return SendResult(
                parts=(
                    SentPart(message_id="0C0A", price=Decimal("0.04"), network="23410"),
                    SentPart(message_id="0C0B", price=Decimal("0.04"), network="23410"),
                )
            )

    monkeypatch.setattr(delivery, "get_provider", FirstPartReceiptFirst)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    parts = {part.vonage_message_id: part for part in message.parts.all()}
    assert set(parts) == {"0C0A", "0C0B"}
    first, second = parts["0C0A"], parts["0C0B"]
    assert (first.status, first.price, first.network, first.superseded) == (
        "delivered",
        Decimal("0.04"),
        "23410",
        False,
    )
    assert (second.status, second.price, second.superseded) == ("sent", Decimal("0.04"), False)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT  # the second part is not delivered yet

    receipt_record(receipt=DeliveryReceipt(vonage_message_id="0C0B", status="delivered"))

    message.refresh_from_db()
    assert (message.status, message.price) == (Message.Status.DELIVERED, Decimal("0.08"))


@pytest.mark.parametrize(
    ("receipt", "error_code", "expected"),
    [
        (MessagePart.Status.DELIVERED, "", Message.Status.DELIVERED),
        (MessagePart.Status.FAILED, "6", Message.Status.FAILED),
    ],
)
def test_a_message_a_receipt_proved_accepted_is_not_sent_again(
    vonage: responses.RequestsMock, receipt: str, error_code: str, expected: str
) -> None:
    """An earlier attempt timed out, but Vonage had taken it: its receipt (matched by
    client-ref) created a part. Sending again would deliver the text twice; the message is
    recorded as sent, and its status follows the receipts (a failed one fails it)."""
    message = queued(attempts=1)
    MessagePart.objects.create(
        message=message, vonage_message_id="0C00EARLIER", status=receipt, error_code=error_code
    )

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.SENT
    assert "not sent again" in result.detail
    assert len(vonage.calls) == 0
    message.refresh_from_db()
    assert message.status == expected


def test_superseded_parts_of_an_earlier_attempt_do_not_stop_a_send(
    vonage: responses.RequestsMock,
) -> None:
    """Parts accepted before a transient failure were superseded: the whole text goes again."""
    message = queued(attempts=1)
    MessagePart.objects.create(
        message=message,
        vonage_message_id="0C00EARLIER",
        status=MessagePart.Status.FAILED,
        error_code="6",
        superseded=True,
    )
    answer_ok(vonage, message)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    assert len(vonage.calls) == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.parts.filter(vonage_message_id="0C0000001234567B", superseded=False).exists()


def test_a_vonage_id_already_recorded_for_another_message_is_left_alone(
    vonage: responses.RequestsMock, caplog
) -> None:
    other = MessageFactory.create(status=Message.Status.SENT, sender=BOB_PROXY, recipient=BOB)
    MessagePart.objects.create(
        message=other, vonage_message_id="0C0000001234567B", price=Decimal("0.01")
    )
    message = queued()
    answer_ok(vonage, message, "sms_send_two_parts")

    with caplog.at_level(logging.ERROR, logger=delivery.__name__):
        assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    assert "already recorded for message" in caplog.text
    kept = MessagePart.objects.get(vonage_message_id="0C0000001234567B")
    assert (kept.message_id, kept.price) == (other.pk, Decimal("0.01"))
    assert list(message.parts.values_list("vonage_message_id", flat=True)) == ["0C0000001234567C"]
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_success_after_the_sweep_took_the_row_back_still_counts(
    vonage: responses.RequestsMock, caplog
) -> None:
    message = queued()

    def answer(request):
        # The sweep re-queued the row meanwhile (a send slower than STALE_SENDING_AFTER).
        Message.objects.filter(pk=message.pk).update(
            status=Message.Status.QUEUED, error_code=INTERRUPTED, claimed_at=None
        )
        return (200, {}, '{"message-count": "1", "messages": [{"status": "0", "message-id": "L"}]}')

    vonage.add_callback(responses.POST, SMS_SEND_URL, callback=answer)

    with caplog.at_level(logging.WARNING, logger=delivery.__name__):
        assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    assert "was queued when its send succeeded" in caplog.text
    message.refresh_from_db()
    assert (message.status, message.error_code, message.next_attempt_at) == ("sent", "", None)
    assert message.parts.get().vonage_message_id == "L"


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


# --- a long wait for the rate limiter -------------------------------------------------------------


class SlowLimiter:
    """A limiter whose wait lasts `waited` on a fake clock (`timezone.now` moves on by it)."""

    def __init__(self, monkeypatch, waited: timedelta, *, sweep: bool = False) -> None:
        self.waited, self.sweep = waited, sweep
        self.offset = timedelta(0)
        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + self.offset)

    def acquire(self) -> float:
        self.offset += self.waited
        if self.sweep:  # the stale sweep runs at the end of the wait
            outbox_recover_stale()
        return self.waited.total_seconds()


def test_the_stale_clock_restarts_after_waiting_for_the_limiter(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    message = queued()
    limiter = SlowLimiter(monkeypatch, STALE_SENDING_AFTER * 0.8)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    recovered_during_send = []

    def answer(request):
        # The sweep runs while Vonage is being called, a little later: 1.2 stale periods after
        # the claim, but only 0.4 after the wait for a token ended.
        later = timezone.now() + STALE_SENDING_AFTER * 0.4
        recovered_during_send.extend(outbox_recover_stale(now=later))
        return (200, {}, '{"message-count": "1", "messages": [{"status": "0", "message-id": "X"}]}')

    vonage.add_callback(responses.POST, SMS_SEND_URL, callback=answer)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    assert recovered_during_send == []  # the send was not mistaken for a dead worker's
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("sent", "")


@pytest.mark.parametrize(
    "waited,restamped",
    [
        (timedelta(0), False),
        (CLAIM_RESTAMP_AFTER / 2, False),
        (CLAIM_RESTAMP_AFTER, True),
        (timedelta(seconds=30), True),
    ],
)
def test_only_a_wait_of_a_second_or_more_restarts_the_claims_clock(
    vonage: responses.RequestsMock, monkeypatch, waited: timedelta, restamped: bool
) -> None:
    message = queued()
    limiter = SlowLimiter(monkeypatch, waited)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    answer_ok(vonage, message)
    before = timezone.now()

    with CaptureQueriesContext(connection) as context:
        assert message_deliver(message_id=message.pk).outcome == Outcome.SENT

    message.refresh_from_db()
    assert message.claimed_at is not None
    claim_age = message.claimed_at - before
    if restamped:
        assert claim_age >= waited
    else:
        assert claim_age < CLAIM_RESTAMP_AFTER / 2
    restamps = [sql for sql in statements(context) if 'SET "claimed_at"' in sql]
    assert len(restamps) == (1 if restamped else 0)


def test_a_row_the_sweep_took_back_during_the_wait_is_not_sent(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    message = queued()
    limiter = SlowLimiter(monkeypatch, STALE_SENDING_AFTER + timedelta(seconds=1), sweep=True)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.SKIPPED
    assert len(vonage.calls) == 0
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("queued", INTERRUPTED)


def test_a_late_failure_does_not_undo_another_attempts_send(
    vonage: responses.RequestsMock,
) -> None:
    message = queued()

    def answer(request):
        # Meanwhile the sweep gave the row to another worker, which sent it.
        Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT)
        return (200, {}, '{"message-count": "1", "messages": [{"status": "9", "error-text": "Q"}]}')

    vonage.add_callback(responses.POST, SMS_SEND_URL, callback=answer)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SKIPPED
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("sent", "")

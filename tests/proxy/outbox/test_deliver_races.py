"""Delivery racing receipts, the stale sweep and a long wait for the rate limiter."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy.gateway.base import SendResult, SentPart
from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox.deliver import (
    CLAIM_RESTAMP_AFTER,
    Outcome,
    message_deliver,
)
from smsproxy.proxy.outbox.receipts import receipt_record
from smsproxy.proxy.outbox.stale import INTERRUPTED, outbox_recover_stale, stale_sending_after
from tests.factories import MessageFactory
from tests.proxy.fixtures import BOB, BOB_PROXY, SMS_SEND_URL
from tests.proxy.outbox.helpers import answer_ok, queued, statements

pytestmark = pytest.mark.django_db


# --- receipts racing the send --------------------------------------------------------------------


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
        # The sweep re-queued the row meanwhile (a send slower than stale_sending_after()).
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


# --- a long wait for the rate limiter ------------------------------------------------------------


class SlowLimiter:
    """A limiter whose wait lasts `waited` on a fake clock (`timezone.now` moves on by it)."""

    def __init__(self, monkeypatch, waited: timedelta, *, sweep: bool = False) -> None:
        self.waited, self.sweep = waited, sweep
        self.offset = timedelta(0)
        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + self.offset)

    def acquire(
        self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
    ) -> float:
        self.offset += self.waited
        if self.sweep:  # the stale sweep runs at the end of the wait
            outbox_recover_stale()
        return self.waited.total_seconds()


def test_the_stale_clock_restarts_after_waiting_for_the_limiter(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    message = queued()
    limiter = SlowLimiter(monkeypatch, stale_sending_after() * 0.8)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    recovered_during_send = []

    def answer(request):
        # The sweep runs while Vonage is being called, a little later: 1.2 stale periods after
        # the claim, but only 0.4 after the wait for a token ended.
        later = timezone.now() + stale_sending_after() * 0.4
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
    limiter = SlowLimiter(monkeypatch, stale_sending_after() + timedelta(seconds=1), sweep=True)
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

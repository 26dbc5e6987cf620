"""A row a dead worker left in "sending": `outbox_recover_stale` (policy in deliver.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.deliver import (
    INTERRUPTED,
    STALE_SENDING_AFTER,
    Outcome,
    message_deliver,
    outbox_recover_stale,
)
from smsproxy.proxy.outbox.receipts import receipt_record
from tests.proxy.outbox.helpers import answer_ok, queued, stuck

pytestmark = pytest.mark.django_db


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

"""A row a dead worker left in "sending": `outbox_recover_stale` (policy in deliver.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import record
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.deliver import (
    Outcome,
    message_deliver,
)
from smsproxy.proxy.outbox.receipts import receipt_record
from smsproxy.proxy.outbox.stale import INTERRUPTED, outbox_recover_stale, stale_sending_after
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
        claimed_at=timezone.now() - stale_sending_after() - timedelta(seconds=1)
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


# --- a database blip while the outcome is written ------------------------------------------------


def _flaky_parts_store(monkeypatch, errors: list[Exception]) -> list[float]:
    """The outcome write fails with `errors` first (then works); returns the pauses taken."""
    real = record.message_parts_store

    def flaky(**kwargs):
        if errors:
            raise errors.pop(0)
        return real(**kwargs)

    monkeypatch.setattr(record, "message_parts_store", flaky)
    pauses: list[float] = []
    monkeypatch.setattr(record, "_sleep", pauses.append)
    return pauses


@pytest.mark.django_db(transaction=True)
def test_a_database_blip_after_vonage_accepted_the_text_does_not_send_it_twice(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    message = queued()
    answer_ok(vonage, message)
    pauses = _flaky_parts_store(
        monkeypatch,
        [OperationalError("server closed the connection"), InterfaceError("connection closed")],
    )

    result = message_deliver(message_id=message.pk)

    assert result.outcome == Outcome.SENT
    assert pauses == [0.5, 1.0]
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.parts.count() == 1
    # Nothing left for the stale sweep to send again.
    later = timezone.now() + stale_sending_after() * 2
    assert outbox_recover_stale(now=later) == []
    assert len(vonage.calls) == 1


def test_a_database_down_longer_than_the_retries_leaves_the_row_to_the_sweep(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    """The remaining crash window (deliver's docstring): the error propagates, the row stays
    `sending`, and the sweep settles it after OUTBOX_STALE_SENDING_AFTER."""
    message = queued()
    answer_ok(vonage, message)
    pauses = _flaky_parts_store(monkeypatch, [OperationalError("down")] * 10)

    with pytest.raises(OperationalError):
        message_deliver(message_id=message.pk)

    assert pauses == list(record.WRITE_RETRY_DELAYS)
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING


def test_the_stale_timeout_is_a_setting(settings) -> None:
    settings.OUTBOX_STALE_SENDING_AFTER = 900
    message = queued()
    message_claim(message_id=message.pk, now=timezone.now())
    Message.objects.filter(pk=message.pk).update(claimed_at=timezone.now() - timedelta(seconds=600))

    assert outbox_recover_stale() == []

    Message.objects.filter(pk=message.pk).update(claimed_at=timezone.now() - timedelta(seconds=901))
    assert [m.pk for m in outbox_recover_stale()] == [message.pk]

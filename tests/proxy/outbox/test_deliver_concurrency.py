"""The send's result racing a receipt in another transaction (PostgreSQL, real threads).

Run with DATABASE_URL pointing at PostgreSQL; skipped on SQLite.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections

from smsproxy.gateway.base import SendResult, SentPart
from smsproxy.gateway.webhooks import DeliveryReceipt
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox import receipts
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.outbox.receipts import receipt_record
from tests.factories import MessageFactory
from tests.proxy.fixtures import BOB, BOB_PROXY, number

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"),
]

HOLD = 0.5  # seconds the receipt's transaction keeps the message row locked


def test_a_receipt_committing_while_the_result_waits_for_the_row_is_seen(
    monkeypatch, settings
) -> None:
    """The result's transaction locks the row first and reads the parts after: a receipt that
    held the lock (and created the part) is seen once it commits, never overwritten."""
    settings.SMS_RATE_LIMIT = 0
    message = MessageFactory.create(sender=BOB_PROXY, recipient=BOB)
    number(BOB_PROXY)
    holding = threading.Event()
    errors: list[BaseException] = []
    real_refresh = receipts.message_status_refresh

    def slow_refresh(**kwargs):
        # receipt_record's last step inside its transaction: the row is locked, the part made.
        holding.set()
        time.sleep(HOLD)
        return real_refresh(**kwargs)

    monkeypatch.setattr(receipts, "message_status_refresh", slow_refresh)

    def receipt(client_ref: str) -> None:
        try:
            receipt_record(
                receipt=DeliveryReceipt(
                    vonage_message_id="0C0RACE",
                    status="delivered",
                    client_ref=client_ref,
                    sender=BOB_PROXY,
                    recipient=BOB,
                )
            )
        except BaseException as error:  # reported in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads: list[threading.Thread] = []

    class ReceiptDuringTheSend:
        def send_sms(self, *, client_ref: str, **kwargs) -> SendResult:
            thread = threading.Thread(target=receipt, args=(client_ref,))
            threads.append(thread)
            thread.start()
            assert holding.wait(10)
            return SendResult(
                parts=(SentPart(message_id="0C0RACE", price=Decimal("0.05"), network="23410"),)
            )

    monkeypatch.setattr(delivery, "get_provider", ReceiptDuringTheSend)

    started = time.monotonic()
    result = message_deliver(message_id=message.pk)
    waited = time.monotonic() - started
    for thread in threads:
        thread.join(10)

    assert not errors, errors
    assert result.outcome == Outcome.SENT
    assert waited >= HOLD * 0.8  # the result did wait for the receipt's transaction
    [part] = MessagePart.objects.filter(message=message)
    assert (part.vonage_message_id, part.status, part.price, part.network) == (
        "0C0RACE",
        "delivered",
        Decimal("0.05"),
        "23410",
    )
    message.refresh_from_db()
    assert (message.status, message.price) == (Message.Status.DELIVERED, Decimal("0.05"))

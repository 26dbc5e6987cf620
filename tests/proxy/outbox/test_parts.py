"""A sent message's status, derived from its parts (outbox/parts.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox.parts import message_status_refresh
from tests.proxy.outbox.helpers import sent

pytestmark = pytest.mark.django_db


def test_the_status_refresh_uses_the_parts_it_is_given(django_assert_num_queries) -> None:
    """The send's result passes the parts it has just read and written under the row lock."""
    message = sent("P1", "P2")
    parts = list(message.parts.order_by("id"))
    now = timezone.now()
    for part in parts:  # as the caller holds them, ahead of the stored rows
        part.status, part.receipt_at, part.price = (
            MessagePart.Status.DELIVERED,
            now,
            Decimal("0.02"),
        )

    with django_assert_num_queries(1):  # the message's UPDATE: the parts are not read again
        message_status_refresh(message=message, parts=parts)

    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.price) == (
        Message.Status.DELIVERED,
        now,
        Decimal("0.04"),
    )


def test_the_status_refresh_reads_the_parts_when_not_given() -> None:
    message = sent("P1", "P2")
    MessagePart.objects.filter(message=message).update(status=MessagePart.Status.DELIVERED)

    message_status_refresh(message=message)

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED

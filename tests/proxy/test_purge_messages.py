"""`purge_messages`: old texts go, rows and statistics stay, in-flight messages are kept."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from smsproxy.proxy.models import InboundPart, Message
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db


def _aged(days: int, **fields: object) -> Message:
    message = MessageFactory.create(**fields)
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=days))
    return message


def _purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_messages", *args, stdout=out)
    return out.getvalue()


def test_purge_blanks_old_texts_and_keeps_rows_statuses_and_prices() -> None:
    old_inbound = _aged(40, direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED)
    InboundPart.objects.create(
        vonage_message_id="P1",
        sender=old_inbound.sender,
        recipient=old_inbound.recipient,
        concat_ref="r",
        concat_total=2,
        concat_part=1,
        text="secret half",
        message=old_inbound,
    )
    old_delivered = _aged(40, status=Message.Status.DELIVERED, price=Decimal("0.03"))
    recent = _aged(5, status=Message.Status.DELIVERED)

    output = _purge("--older-than", "30", "--apply")

    assert "Purged the texts of 2 message(s)" in output
    old_inbound.refresh_from_db()
    old_delivered.refresh_from_db()
    recent.refresh_from_db()
    assert (old_inbound.text, old_delivered.text, recent.text) == ("", "", "Hello")
    assert InboundPart.objects.get().text == ""
    assert (old_delivered.status, old_delivered.price) == (
        Message.Status.DELIVERED,
        Decimal("0.03"),
    )
    assert Message.objects.count() == 3


@pytest.mark.parametrize("status", [Message.Status.QUEUED, Message.Status.SENDING])
def test_purge_keeps_the_text_of_a_message_still_going_out(status: str) -> None:
    pending = _aged(40, status=status)

    _purge("--older-than", "30", "--apply")

    pending.refresh_from_db()
    assert pending.text == "Hello"


def test_purge_without_apply_only_counts() -> None:
    old = _aged(40, status=Message.Status.DELIVERED)

    output = _purge("--older-than", "30")

    assert "1 message text(s) older than 30 day(s) would be purged" in output
    old.refresh_from_db()
    assert old.text == "Hello"


@pytest.mark.parametrize(
    "args", [("--older-than", "0"), ("--older-than", "3", "--batch-size", "0")]
)
def test_purge_refuses_bad_arguments(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        _purge(*args)

"""Delivery receipts: part by part, and the message they make up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from smsproxy.common.errors import ApplicationError
from smsproxy.gateway.webhooks import WebhookIgnored, receipt_parse
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox.queue import message_retry
from smsproxy.proxy.outbox.receipts import receipt_record
from tests.factories import MessageFactory
from tests.proxy.fixtures import BOB, BOB_PROXY, payload
from tests.proxy.outbox.helpers import sent

pytestmark = pytest.mark.django_db


def receive(
    message_id: str,
    status: str,
    *,
    err_code: str = "0",
    client_ref: str = "",
    price: str = "0.0333",
) -> MessagePart | None:
    params = payload(
        "delivery_receipt_delivered",
        messageId=message_id,
        status=status,
        err_code=err_code,
        client_ref=client_ref,
        price=price,
    )
    return receipt_record(receipt=receipt_parse(params))


def test_single_part_delivered() -> None:
    message = sent("P1")

    part = receive("P1", "delivered")

    assert part is not None and part.status == MessagePart.Status.DELIVERED
    assert part.receipt_at is not None
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.delivered_at == part.receipt_at
    assert message.price == Decimal("0.0333")


def test_multi_part_is_delivered_only_when_every_part_is() -> None:
    message = sent("P1", "P2", "P3")

    receive("P2", "delivered")
    receive("P1", "delivered")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT

    receive("P3", "delivered")
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.price == Decimal("0.0999")


@pytest.mark.parametrize(
    "status,expected", [("failed", "failed"), ("rejected", "rejected"), ("expired", "expired")]
)
def test_a_failed_part_fails_the_message_with_its_error_code(status: str, expected: str) -> None:
    message = sent("P1", "P2")
    receive("P1", "delivered")

    receive("P2", status, err_code="4")

    message.refresh_from_db()
    assert message.status == expected
    assert message.error_code == "4"
    assert "P2" in message.error_text
    assert message.parts.get(vonage_message_id="P2").error_code == "4"


def test_the_saved_failed_receipt() -> None:
    message = sent("0C0000001234567C")

    receipt_record(receipt=receipt_parse(payload("delivery_receipt_failed")))

    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "4")


@pytest.mark.parametrize("status", ["accepted", "buffered", "unknown"])
def test_intermediate_statuses_are_recorded_on_the_part_only(status: str) -> None:
    message = sent("P1")

    receive("P1", status)

    assert message.parts.get().status == status
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_late_intermediate_receipt_does_not_undo_a_final_one() -> None:
    message = sent("P1")
    receive("P1", "delivered")

    receive("P1", "buffered")

    assert message.parts.get().status == MessagePart.Status.DELIVERED
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_a_later_failure_does_not_undo_a_failed_message() -> None:
    message = sent("P1", "P2")
    receive("P1", "expired", err_code="1")

    receive("P2", "failed", err_code="6")

    message.refresh_from_db()
    assert (message.status, message.error_code) == ("expired", "1")


def test_a_receipt_before_the_send_result_is_found_by_client_ref() -> None:
    message = sent(status=Message.Status.SENDING)

    part = receive("P1", "delivered", client_ref=str(message.pk))

    assert part is not None and part.message == message
    message.refresh_from_db()
    # Not final yet: only the send's result knows how many parts there are.
    assert message.status == Message.Status.SENDING


@pytest.mark.parametrize("client_ref", ["", "not-ours", "999999"])
def test_a_receipt_for_an_unknown_message_is_ignored(client_ref: str) -> None:
    assert receive("P404", "delivered", client_ref=client_ref) is None
    assert MessagePart.objects.count() == 0


@pytest.mark.parametrize(
    "numbers",
    [
        {"to": "447700900999"},
        {"msisdn": "447700901999"},
        {"to": "", "msisdn": "x"},
        {"to": "Vonage"},  # an alphanumeric sender: never one of our numbers
    ],
)
def test_another_applications_receipt_with_a_numeric_client_ref_is_ignored(
    numbers: dict[str, str],
) -> None:
    """Another app on the same Vonage account may number its client-refs like ours."""
    message = sent(status=Message.Status.SENDING)
    params = {
        **payload("delivery_receipt_failed", messageId="THEIRS1", client_ref=str(message.pk)),
        **numbers,
    }

    assert receipt_record(receipt=receipt_parse(params)) is None

    assert MessagePart.objects.count() == 0
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING


def test_a_receipt_naming_an_inbound_message_is_ignored() -> None:
    inbound = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.RECEIVED
    )

    assert receive("P1", "delivered", client_ref=str(inbound.pk)) is None


def test_after_a_retry_only_the_new_send_counts() -> None:
    message = sent("OLD1")
    receive("OLD1", "failed", err_code="6")
    message.refresh_from_db()
    message_retry(message=message)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT)
    MessagePart.objects.create(message=message, vonage_message_id="NEW1")

    receive("NEW1", "delivered")
    receive("OLD1", "failed", err_code="6")  # Vonage repeats an old receipt

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


@pytest.mark.parametrize(
    "change,field",
    [
        ({"status": ""}, "status"),
        ({"messageId": ""}, "messageId"),
        ({"messageId": "X" * 65}, "messageId"),
    ],
)
def test_receipt_parse_refuses_unusable_receipts(change: dict[str, str], field: str) -> None:
    with pytest.raises(ApplicationError) as raised:
        receipt_parse({**payload("delivery_receipt_delivered"), **change})

    assert raised.value.code == "malformed"
    assert field in raised.value.fields


@pytest.mark.parametrize("status", ["teleported", "sent"])
def test_a_receipt_with_a_status_we_do_not_know_is_ignored_not_refused(status: str) -> None:
    """Refused, Vonage would send it again for three days; no retry would change our answer."""
    with pytest.raises(WebhookIgnored, match="unknown status"):
        receipt_parse(payload("delivery_receipt_delivered", status=status))


def test_receipt_parse_reads_the_numbers_as_e164() -> None:
    receipt = receipt_parse(payload("delivery_receipt_delivered", to=" +447700900200"))

    assert (receipt.sender, receipt.recipient) == (BOB_PROXY, BOB)

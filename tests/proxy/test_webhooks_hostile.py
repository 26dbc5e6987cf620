"""Hostile webhook input (DESIGN §8): never a 5xx, stored cleaned, ignored or refused whole.

Each case failed before with a 500 on PostgreSQL (NUL bytes reach the database, which refuses
them in text) or lost the receipt on every retry (a price beyond numeric(10, 5)).
"""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import Client

from smsproxy.gateway.signatures import sign_params
from smsproxy.proxy.models import InboundPart, Message, MessagePart
from tests.factories import MessageFactory
from tests.proxy.fixtures import (
    BOB,
    BOB_PROXY,
    ENCODINGS,
    INBOUND_URL,
    RECEIPT_URL,
    conversation_make,
    payload,
    send_webhook,
)

pytestmark = pytest.mark.django_db

SECRET = "hostile-input-signature-secret"


def _stored_rows() -> tuple[int, int, int]:
    return Message.objects.count(), InboundPart.objects.count(), MessagePart.objects.count()


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("field", ["text", "msisdn", "messageId", "concat-ref"])
@pytest.mark.parametrize("signed", [False, True])
def test_a_nul_byte_in_an_inbound_sms_never_answers_5xx(
    settings, encoding: str, field: str, signed: bool
) -> None:
    conversation_make()
    params = payload("inbound_sms_text")
    if field == "concat-ref":
        params.update({"concat": "true", "concat-total": "2", "concat-part": "1"})
    params[field] = params.get(field, "ref") + "\x00" + "x"
    if signed:
        settings.VONAGE_SIGNATURE_SECRET = SECRET
        settings.VONAGE_SIGNATURE_METHOD = "sha256"
        params = sign_params(params, secret=SECRET, method="sha256")
    before = _stored_rows()

    response = send_webhook(Client(), INBOUND_URL, params, encoding)

    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    stored = Message.objects.filter(direction=Message.Direction.INBOUND)
    if response.status_code == HTTPStatus.OK and _stored_rows() != before:
        # Stored cleaned: no NUL anywhere in what was written.
        for message in stored:
            assert "\x00" not in message.text + message.sender + (message.vonage_message_id or "")
        for part in InboundPart.objects.all():
            assert "\x00" not in part.concat_ref + part.vonage_message_id + part.text
    else:
        assert _stored_rows() == before


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("field", ["messageId", "network-code", "client-ref", "err-code"])
def test_a_nul_byte_in_a_receipt_never_answers_5xx(encoding: str, field: str) -> None:
    message = MessageFactory.create(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENT,
        sender=BOB_PROXY,
        recipient=BOB,
    )
    params = payload("delivery_receipt_delivered", client_ref=str(message.pk))
    params[field] = params[field] + "\x00"

    response = send_webhook(Client(), RECEIPT_URL, params, encoding)

    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    for part in MessagePart.objects.all():
        assert "\x00" not in part.vonage_message_id + part.network + part.error_code


@pytest.mark.parametrize("price", ["123456789.123", "1e999999999", "-1", "NaN", "Infinity", "x"])
def test_a_receipt_with_a_price_we_cannot_store_is_recorded_without_it(price: str) -> None:
    message = MessageFactory.create(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENT,
        sender=BOB_PROXY,
        recipient=BOB,
    )
    params = payload("delivery_receipt_delivered", client_ref=str(message.pk), price=price)

    response = Client().get(RECEIPT_URL, params)

    assert response.status_code == HTTPStatus.OK
    part = MessagePart.objects.get(message=message)
    assert (part.status, part.price) == (MessagePart.Status.DELIVERED, None)
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_a_receipt_price_is_kept_to_the_column_precision() -> None:
    message = MessageFactory.create(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENT,
        sender=BOB_PROXY,
        recipient=BOB,
    )
    params = payload(
        "delivery_receipt_delivered", client_ref=str(message.pk), price="0.033333333333"
    )

    assert Client().get(RECEIPT_URL, params).status_code == HTTPStatus.OK
    assert MessagePart.objects.get(message=message).price == Decimal("0.03333")


def test_invalid_utf8_in_a_query_never_answers_5xx() -> None:
    conversation_make()
    query = "msisdn=447700901001&to=447700900100&messageId=BAD1&text=%ff%fe%00hello"

    response = Client().get(f"{INBOUND_URL}?{query}")

    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    if response.status_code == HTTPStatus.OK:
        assert "\x00" not in Message.objects.get(vonage_message_id="BAD1").text

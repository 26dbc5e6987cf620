"""Webhooks built the way Vonage sends them read back through the gateway's own parsers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from smsproxy.gateway.signatures import verify_signature
from smsproxy.gateway.webhooks import (
    DeliveryReceipt,
    InboundSms,
    delivery_receipt_params,
    inbound_sms_params,
    inbound_sms_parse,
    receipt_parse,
    webhook_sign_as_configured,
)

AT = datetime(2026, 11, 24, 20, 19, 7, tzinfo=UTC)


def test_an_inbound_sms_has_vonages_fields_and_reads_back() -> None:
    params = inbound_sms_params(
        sender="+447700901001",
        recipient="+447700900100",
        text="hello there",
        message_id="SIM0001",
        received_at=AT,
    )

    assert params == {
        "msisdn": "447700901001",
        "to": "447700900100",
        "messageId": "SIM0001",
        "text": "hello there",
        "type": "text",
        "keyword": "HELLO",
        "message-timestamp": "2026-11-24 20:19:07",
        "api-key": "sandbox",
    }
    assert inbound_sms_parse(params) == InboundSms(
        vonage_message_id="SIM0001",
        sender="+447700901001",
        recipient="+447700900100",
        text="hello there",
    )


def test_a_text_outside_gsm7_is_unicode() -> None:
    params = inbound_sms_params(sender="+1", recipient="+2", text="Привет", message_id="x")

    assert (params["type"], params["keyword"]) == ("unicode", "ПРИВЕТ")


def test_a_receipt_has_vonages_fields_and_reads_back(settings: Any) -> None:
    settings.VONAGE_API_KEY = "abcd1234"

    params = delivery_receipt_params(
        message_id="SANDBOX-1",
        sender="+447700900100",
        recipient="+447700901234",
        client_ref="17",
        price=Decimal("0.0333"),
        network="23410",
        delivered_at=AT,
    )

    assert params == {
        "msisdn": "447700901234",
        "to": "447700900100",
        "network-code": "23410",
        "messageId": "SANDBOX-1",
        "price": "0.03330000",
        "status": "delivered",
        "scts": "2611242019",
        "err-code": "0",
        "api-key": "abcd1234",
        "client-ref": "17",
        "message-timestamp": "2026-11-24 20:19:07",
    }
    assert receipt_parse(params) == DeliveryReceipt(
        vonage_message_id="SANDBOX-1",
        status="delivered",
        client_ref="17",
        price=Decimal("0.0333"),
        network="23410",
        sender="+447700900100",
        recipient="+447700901234",
    )


def test_a_failed_receipt_keeps_its_error_code() -> None:
    params = delivery_receipt_params(
        message_id="m", sender="+1", recipient="+2", status="failed", error_code="4"
    )

    assert (receipt_parse(params).status, receipt_parse(params).error_code) == ("failed", "4")


def test_webhooks_are_unsigned_without_a_secret() -> None:
    params = inbound_sms_params(sender="+1", recipient="+2", text="hi", message_id="m")

    assert webhook_sign_as_configured(params) == params


@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_webhooks_are_signed_with_a_fresh_nonce_when_a_secret_is_set(
    settings: Any, method: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = "built-secret"
    settings.VONAGE_SIGNATURE_METHOD = method
    params = inbound_sms_params(sender="+1", recipient="+2", text="hi", message_id="m")

    first, second = webhook_sign_as_configured(params), webhook_sign_as_configured(params)

    assert {"sig", "timestamp", "nonce"} <= set(first)
    assert first["nonce"] != second["nonce"]
    verify_signature(first, secret="built-secret", method=method, max_age=60)
    assert "sig" not in params  # the unsigned parameters are left as they were

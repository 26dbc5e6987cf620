"""What a production deployment logs at INFO: no person's number in full, no message text, no
secret — through a whole conversation (webhook, forward, receipt, out-of-session text)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import responses
from django.test import Client

from smsproxy.common.logs import JsonFormatter
from smsproxy.gateway.signatures import sign_params
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox.deliver import message_deliver
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    INBOUND_URL,
    RECEIPT_URL,
    SMS_SEND_URL,
    conversation_make,
    payload,
    vonage_answer,
)

pytestmark = pytest.mark.django_db

API_SECRET = "api-secret-never-logged"
SIGNATURE_SECRET = "signature-secret-never-logged"
TEXT = "The gate code is 4412 and I am in the blue car"


@pytest.fixture
def production(settings: Any, mocked_responses: responses.RequestsMock) -> responses.RequestsMock:
    settings.SMS_PROVIDER = "vonage"
    settings.VONAGE_API_KEY = "abcd1234"
    settings.VONAGE_API_SECRET = API_SECRET
    settings.VONAGE_SIGNATURE_SECRET = SIGNATURE_SECRET
    settings.VONAGE_SIGNATURE_METHOD = "sha256"
    settings.SMS_RATE_LIMIT = 0
    return mocked_responses


def _signed(params: dict[str, str]) -> dict[str, str]:
    return sign_params(params, secret=SIGNATURE_SECRET, method="sha256")


def test_a_whole_conversation_logs_no_number_text_or_secret_at_info(
    production: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    conversation_make()
    client = Client()

    inbound = payload("inbound_sms_text", text=TEXT)
    assert client.get(INBOUND_URL, _signed(inbound)).status_code == 200
    forward = Message.objects.get(forwarded_from__isnull=False)
    production.add(
        responses.POST, SMS_SEND_URL, json=vonage_answer("sms_send_ok", CLIENT_REF=str(forward.pk))
    )
    message_deliver(message_id=forward.pk)
    receipt = payload("delivery_receipt_delivered", client_ref=str(forward.pk))
    assert client.get(RECEIPT_URL, _signed(receipt)).status_code == 200
    stranger = payload("inbound_sms_text", msisdn="447700901999", messageId="X2", text=TEXT)
    assert client.get(INBOUND_URL, _signed(stranger)).status_code == 200
    forward.refresh_from_db()
    assert forward.status == Message.Status.DELIVERED  # the whole path ran

    # As LOG_FORMAT=json writes them: the messages and every event field beside them.
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert logged, "nothing was logged: the test would prove nothing"
    for number in (ALICE, BOB, "+447700901999"):
        assert number not in logged and number.lstrip("+") not in logged, number
    assert TEXT not in logged and "gate code" not in logged
    for secret in (API_SECRET, SIGNATURE_SECRET):
        assert secret not in logged
    assert ALICE_PROXY in logged or ALICE_PROXY.lstrip("+") in logged  # our numbers may show

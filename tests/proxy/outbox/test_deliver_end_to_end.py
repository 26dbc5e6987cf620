"""End to end through the embedded worker: conversation → inbound webhook → run_outbox → the
sandbox's send → its delivery receipt, an HTTP request to the receipt webhook of a live server →
delivered."""

from __future__ import annotations

import time
from http import HTTPStatus
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from smsproxy.gateway.signatures import sign_params
from smsproxy.proxy.models import Message
from smsproxy.sandbox.models import SandboxMessage
from smsproxy.sandbox.receipts import RECEIPT_DELAY_SECONDS, receipt_sender
from tests.proxy.fixtures import (
    BOB,
    BOB_PROXY,
    INBOUND_URL,
    conversation_make,
    payload,
    send_webhook,
)

# The receipt is served by another thread (the live server): the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receipts_to_live_server(live_server, settings):
    """Sandbox receipts on, addressed (through PUBLIC_BASE_URL) to the live server."""
    settings.SANDBOX_DELIVERY_RECEIPTS = True
    settings.PUBLIC_BASE_URL = live_server.url
    yield
    receipt_sender.stop()


def wait_for_delivery(message: Message, *, seconds: float) -> float:
    """Polls until `message` is delivered or `seconds` pass; returns the time waited."""
    started = time.monotonic()
    while message.status != Message.Status.DELIVERED and time.monotonic() - started < seconds:
        time.sleep(0.05)
        message.refresh_from_db()
    return time.monotonic() - started


@pytest.mark.parametrize("secret", ["", "end-to-end-secret"])
def test_a_text_is_forwarded_once_and_its_receipt_recorded(
    receipts_to_live_server, settings, secret: str
) -> None:
    settings.SMS_RATE_LIMIT = 0
    settings.VONAGE_SIGNATURE_SECRET = secret  # the live server checks the receipt's signature
    conversation = conversation_make()
    params = payload("inbound_sms_text")
    if secret:
        params = sign_params(params, secret=secret, method=settings.VONAGE_SIGNATURE_METHOD)
    client = Client()

    assert send_webhook(client, INBOUND_URL, params, "get").status_code == HTTPStatus.OK
    assert send_webhook(client, INBOUND_URL, params, "get").status_code == HTTPStatus.OK  # retry
    out = StringIO()
    call_command("run_outbox", "--once", stdout=out)
    call_command("run_outbox", "--once", stdout=out)  # nothing left to send
    # What a worker's exit does: the receipt still queued is sent before the process ends.
    assert receipt_sender.stop() == 0

    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    wait_for_delivery(forward, seconds=5)  # the live server may still be writing it
    assert out.getvalue().count("sent #") == 1
    assert (forward.sender, forward.recipient, forward.text) == (BOB_PROXY, BOB, params["text"])
    assert forward.conversation == conversation
    assert forward.status == Message.Status.DELIVERED
    assert forward.parts.get().status == "delivered"
    [sms] = SandboxMessage.objects.all()
    assert (sms.sender, sms.recipient, sms.client_ref) == (BOB_PROXY, BOB, str(forward.pk))
    assert sms.callback_url == f"{settings.PUBLIC_BASE_URL}/webhooks/vonage/delivery-receipt/"


def test_the_receipt_arrives_a_moment_later_as_with_vonage(receipts_to_live_server, settings):
    """Nobody stops the sender here: its own thread sends the receipt once it is due."""
    settings.SMS_RATE_LIMIT = 0
    conversation_make()
    assert (
        send_webhook(Client(), INBOUND_URL, payload("inbound_sms_unicode"), "json").status_code
        == HTTPStatus.OK
    )

    call_command("run_outbox", "--once", stdout=StringIO())

    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.status == Message.Status.SENT  # the receipt is not part of the send
    waited = wait_for_delivery(forward, seconds=RECEIPT_DELAY_SECONDS + 10)
    assert forward.status == Message.Status.DELIVERED
    assert waited > RECEIPT_DELAY_SECONDS / 2
    assert SandboxMessage.objects.get().encoding == "unicode"

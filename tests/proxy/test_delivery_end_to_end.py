"""End to end through the embedded worker: conversation → inbound webhook → run_outbox → the
sandbox's send → its delivery receipt through the receipt webhook → delivered."""

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
from tests.proxy.fixtures import (
    BOB,
    BOB_PROXY,
    INBOUND_URL,
    conversation_make,
    payload,
    send_webhook,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("secret", ["", "end-to-end-secret"])
def test_a_text_is_forwarded_once_and_its_receipt_recorded(
    settings, django_capture_on_commit_callbacks, secret: str
) -> None:
    settings.VONAGE_SIGNATURE_SECRET = secret
    conversation = conversation_make()
    params = payload("inbound_sms_text")
    if secret:
        params = sign_params(params, secret=secret, method=settings.VONAGE_SIGNATURE_METHOD)
    client = Client()

    assert send_webhook(client, INBOUND_URL, params, "get").status_code == HTTPStatus.OK
    assert send_webhook(client, INBOUND_URL, params, "get").status_code == HTTPStatus.OK  # retry
    out = StringIO()
    # The sandbox feeds its receipt back once the worker's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        call_command("run_outbox", "--once", stdout=out)
    call_command("run_outbox", "--once", stdout=out)  # nothing left to send

    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert out.getvalue().count("sent #") == 1
    assert (forward.sender, forward.recipient, forward.text) == (BOB_PROXY, BOB, params["text"])
    assert forward.conversation == conversation
    assert forward.status == Message.Status.DELIVERED
    assert forward.parts.get().status == "delivered"
    [sms] = SandboxMessage.objects.all()
    assert (sms.sender, sms.recipient, sms.client_ref) == (BOB_PROXY, BOB, str(forward.pk))


@pytest.mark.django_db(transaction=True)
def test_the_receipt_arrives_later_as_with_vonage(settings) -> None:
    """Outside a test transaction the sandbox answers from another thread a moment later."""
    settings.SMS_RATE_LIMIT = 0
    conversation_make()
    assert (
        send_webhook(Client(), INBOUND_URL, payload("inbound_sms_unicode"), "json").status_code
        == HTTPStatus.OK
    )

    call_command("run_outbox", "--once", stdout=StringIO())

    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    deadline = time.monotonic() + 10
    while forward.status != Message.Status.DELIVERED and time.monotonic() < deadline:
        time.sleep(0.1)
        forward.refresh_from_db()
    assert forward.status == Message.Status.DELIVERED
    assert SandboxMessage.objects.get().encoding == "unicode"

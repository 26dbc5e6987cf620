"""What the browser tests look at, made the way production makes it: numbers rented by a
provisioning job on the sandbox, a conversation opened by the service, texts arriving through
the webhooks and sent by the embedded worker (`run_outbox`)."""

from __future__ import annotations

import itertools
from io import StringIO

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from smsproxy.gateway.webhooks import delivery_receipt_params, inbound_sms_params
from smsproxy.numbers.models import VirtualNumber
from smsproxy.numbers.services.provisioning import provisioning_job_create
from smsproxy.numbers.services.provisioning_start import provisioning_job_start
from smsproxy.proxy.models import Conversation, Message
from tests.proxy.specs import open_between, proxy_of

# People's real numbers, in the GB range reserved for drama (the sandbox accepts them).
ALICE, BOB = "+447700900501", "+447700900502"
# Vonage's err-code 6: "Anti-Spam Rejection".
ERR_ANTI_SPAM = "6"

_message_ids = itertools.count(1)


def worker_run_once() -> str:
    """One pass of the embedded worker: pending jobs, then every due SMS; what it printed."""
    out = StringIO()
    call_command("run_outbox", "--once", stdout=out, stderr=out)
    return out.getvalue()


def pool_rent(count: int) -> list[VirtualNumber]:
    """`count` GB numbers rented on the sandbox, as `provision_numbers` rents them."""
    job = provisioning_job_create(country="GB", quantity=count)
    provisioning_job_start(job=job, foreground=True)
    return list(job.numbers.order_by("msisdn"))


def text_arrives(*, sender: str, proxy_number: str, text: str) -> None:
    """An SMS from `sender` to one of our numbers, posted to the webhook as Vonage posts it."""
    params = inbound_sms_params(
        sender=sender, recipient=proxy_number, text=text, message_id=f"IN-{next(_message_ids)}"
    )
    response = Client().post(reverse("vonage-inbound-sms"), params)
    assert response.status_code == 200, response.content


def receipt_arrives(*, message: Message, status: str, error_code: str = "0") -> None:
    """Vonage's delivery receipt for every part of a sent message."""
    for part in message.parts.all():
        params = delivery_receipt_params(
            message_id=part.vonage_message_id,
            sender=message.sender,
            recipient=message.recipient,
            status=status,
            error_code=error_code,
            client_ref=str(message.pk),
        )
        response = Client().get(reverse("vonage-delivery-receipt"), params)
        assert response.status_code == 200, response.content


def conversation_with_failed_forward() -> tuple[Conversation, Message]:
    """Alice and Bob in a conversation: the intros delivered, Alice's text forwarded to Bob,
    and Vonage's receipt saying the forward failed. The pool has a third number, free."""
    pool_rent(3)
    conversation = open_between(ALICE, BOB, reference="booking-42")
    worker_run_once()
    for intro in conversation.messages.filter(purpose=Message.Purpose.INTRO):
        receipt_arrives(message=intro, status="delivered")
    text_arrives(
        sender=ALICE,
        proxy_number=proxy_of(conversation, ALICE).msisdn,
        text="Running 5 minutes late",
    )
    worker_run_once()
    forward = conversation.messages.get(forwarded_from__isnull=False)
    receipt_arrives(message=forward, status="failed", error_code=ERR_ANTI_SPAM)
    forward.refresh_from_db()
    assert forward.status == Message.Status.FAILED, forward.status
    return conversation, forward

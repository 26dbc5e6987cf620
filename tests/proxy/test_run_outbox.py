"""The embedded worker: `manage.py run_outbox`."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from smsproxy.proxy.models import InboundPart, Message, MessagePart
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.stale import stale_sending_after
from smsproxy.proxy.services.inbound import CONCAT_TIMEOUT
from tests.factories import MessageFactory
from tests.proxy.fixtures import ALICE, ALICE_PROXY, BOB, BOB_PROXY, conversation_make, number

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_sender_is_ours() -> None:
    """MessageFactory's sender is one of our proxy numbers (delivery refuses any other)."""
    number()


def run_outbox(*args: str) -> str:
    out = StringIO()
    call_command("run_outbox", *args, stdout=out)
    return out.getvalue()


def test_once_sends_every_due_message_through_the_sandbox() -> None:
    number(BOB_PROXY)
    number(ALICE_PROXY)
    first = MessageFactory.create(sender=BOB_PROXY, recipient=BOB, text="one")
    second = MessageFactory.create(sender=ALICE_PROXY, recipient=ALICE, text="two")
    later = MessageFactory.create(next_attempt_at=timezone.now() + timedelta(minutes=5))

    output = run_outbox("--once")

    assert f"sent #{first.pk} {BOB_PROXY} → {BOB}" in output
    assert f"sent #{second.pk}" in output
    assert f"#{later.pk}" not in output
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "sent", second.pk: "sent", later.pk: "queued"}
    assert MessagePart.objects.filter(message=first).count() == 1


def test_once_reports_failures() -> None:
    message = MessageFactory.create(text="")  # the sandbox refuses an empty text, as Vonage does

    output = run_outbox("--once")

    assert f"failed #{message.pk}" in output
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


def test_once_sweeps_stuck_rows_and_timed_out_parts() -> None:
    stuck = MessageFactory.create()
    message_claim(message_id=stuck.pk, now=timezone.now())
    Message.objects.filter(pk=stuck.pk).update(
        claimed_at=timezone.now() - stale_sending_after() - timedelta(minutes=1)
    )
    conversation_make()
    InboundPart.objects.create(
        vonage_message_id="0B01",
        sender=ALICE,
        recipient=ALICE_PROXY,
        concat_ref="9",
        concat_total=2,
        concat_part=1,
        text="half a message",
    )
    InboundPart.objects.update(received_at=timezone.now() - CONCAT_TIMEOUT - timedelta(minutes=1))

    output = run_outbox("--once")

    assert f"#{stuck.pk} was stuck in sending: now queued (interrupted)" in output
    assert "Incomplete concatenated SMS" in output
    stuck.refresh_from_db()
    assert stuck.status == Message.Status.SENT  # re-queued, then sent in the same run
    forward = Message.objects.get(forwarded_from__isnull=False)
    assert (forward.text, forward.recipient, forward.status) == ("half a message", BOB, "sent")


def test_once_closes_expired_conversations() -> None:
    conversation = conversation_make(expires_at=timezone.now() - timedelta(minutes=1))

    output = run_outbox("--once")

    assert "Closed 1 expired conversation(s)" in output
    conversation.refresh_from_db()
    assert conversation.status == "closed"


def test_interval_must_be_positive() -> None:
    with pytest.raises(CommandError, match="--interval"):
        run_outbox("--interval", "0")


def test_help_describes_the_worker() -> None:
    from smsproxy.proxy.management.commands.run_outbox import Command

    assert "SIGTERM" in Command.help
    parser = Command().create_parser("manage.py", "run_outbox")
    assert "--once" in parser.format_help()
    assert "--interval" in parser.format_help()


@pytest.mark.django_db(transaction=True)
def test_the_loop_stops_cleanly_on_sigterm(settings) -> None:
    settings.SANDBOX_DELIVERY_RECEIPTS = False
    message = MessageFactory.create()
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    timer.start()
    try:
        output = run_outbox("--interval", "0.05")
    finally:
        timer.cancel()

    assert "Outbox worker started" in output
    assert f"sent #{message.pk}" in output
    assert "Received SIGTERM" in output
    assert output.rstrip().endswith("Outbox worker stopped.")
    assert signal.getsignal(signal.SIGTERM) == previous

"""The embedded worker (`run_outbox`), the hand-off to a dispatcher, and staff's retry."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from http import HTTPStatus
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.models import InboundPart, Message, MessagePart
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.deliver import STALE_SENDING_AFTER
from smsproxy.proxy.outbox.queue import (
    REDISPATCH_AFTER,
    message_due_q,
    message_queue_outbound,
    message_retry,
    outbox_due_ids,
    outbox_redispatch,
)
from smsproxy.proxy.outbox.ratelimit import LocalRateLimiter, UnlimitedRateLimiter, rate_limiter_get
from smsproxy.proxy.services.inbound import CONCAT_TIMEOUT
from tests.factories import MessageFactory
from tests.proxy.fixtures import (
    ALICE,
    ALICE_PROXY,
    BOB,
    BOB_PROXY,
    INBOUND_URL,
    conversation_make,
    number,
    payload,
    send_webhook,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_sender_is_ours() -> None:
    """MessageFactory's sender is one of our proxy numbers (delivery refuses any other)."""
    number()


def run_outbox(*args: str) -> str:
    out = StringIO()
    call_command("run_outbox", *args, stdout=out)
    return out.getvalue()


# --- run_outbox ----------------------------------------------------------------------------------


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
        claimed_at=timezone.now() - STALE_SENDING_AFTER - timedelta(minutes=1)
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


# --- hand-off to a dispatcher --------------------------------------------------------------------


def test_queueing_hands_the_message_over_after_commit(django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(dispatch, "message_dispatch") as dispatched,
        django_capture_on_commit_callbacks(execute=True),
    ):
        message = message_queue_outbound(sender=BOB_PROXY, recipient=BOB, text="hi")
        dispatched.assert_not_called()

    dispatched.assert_called_once_with(message_id=message.pk)


def test_without_a_broker_dispatch_leaves_the_row_to_the_poller(settings) -> None:
    settings.CELERY_BROKER_URL = ""
    with mock.patch.object(dispatch.celery_app, "send_task") as enqueue:
        dispatch.message_dispatch(message_id=1)

    enqueue.assert_not_called()


def test_with_a_broker_dispatch_enqueues_the_task(settings) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with mock.patch.object(dispatch.celery_app, "send_task") as enqueue:
        dispatch.message_dispatch(message_id=42)

    # By name: deployed workers know the task as this.
    assert enqueue.call_args.args == ("smsproxy.proxy.deliver_message",)
    assert enqueue.call_args.kwargs["args"] == (42,)


def test_a_broker_outage_does_not_fail_the_caller(settings, caplog) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with mock.patch.object(dispatch.celery_app, "send_task", side_effect=ConnectionError("down")):
        dispatch.message_dispatch(message_id=42)

    assert "sweep will enqueue it again" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_failing_hand_off_never_fails_the_webhook_that_queued_the_forward(caplog) -> None:
    conversation_make()

    with mock.patch.object(dispatch, "message_dispatch", side_effect=RuntimeError("broken")):
        response = send_webhook(Client(), INBOUND_URL, payload("inbound_sms_text"), "form")

    assert response.status_code == HTTPStatus.OK
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.status == Message.Status.QUEUED  # committed: a dispatcher finds it later
    assert "broken" in caplog.text


def test_redispatch_hands_over_due_rows_nobody_picked_up() -> None:
    old = timezone.now() - REDISPATCH_AFTER - timedelta(seconds=1)
    lost = MessageFactory.create()
    retry_due = MessageFactory.create(next_attempt_at=timezone.now() - timedelta(seconds=1))
    fresh = MessageFactory.create()
    not_due = MessageFactory.create(next_attempt_at=timezone.now() + timedelta(minutes=1))
    sent = MessageFactory.create(status=Message.Status.SENT)
    Message.objects.exclude(pk=fresh.pk).update(updated_at=old)

    with mock.patch.object(dispatch, "message_dispatch") as dispatched:
        ids = outbox_redispatch()
        again = outbox_redispatch()

    assert ids == [lost.pk, retry_due.pk]
    assert again == []  # touched: not enqueued again on the next sweep
    assert [c.kwargs["message_id"] for c in dispatched.call_args_list] == ids
    assert not_due.pk not in ids and sent.pk not in ids


def test_a_message_is_due_when_never_scheduled_or_scheduled_by_now() -> None:
    now = timezone.now()
    never = MessageFactory.create(next_attempt_at=None)
    past = MessageFactory.create(next_attempt_at=now - timedelta(seconds=1))
    exactly_now = MessageFactory.create(next_attempt_at=now)
    MessageFactory.create(next_attempt_at=now + timedelta(seconds=1))

    due = Message.objects.filter(message_due_q(now=now)).order_by("pk")

    assert list(due) == [never, past, exactly_now]
    assert outbox_due_ids(now=now) == [never.pk, past.pk, exactly_now.pk]


def test_due_ids_are_oldest_first_and_limited() -> None:
    messages = [MessageFactory.create() for _ in range(3)]

    assert outbox_due_ids(limit=2) == [messages[0].pk, messages[1].pk]


# --- rate limiter --------------------------------------------------------------------------------


def test_the_embedded_worker_uses_an_in_process_limiter(settings) -> None:
    settings.CELERY_BROKER_URL = ""
    settings.SMS_RATE_LIMIT = 25

    assert isinstance(rate_limiter_get(), LocalRateLimiter)
    assert rate_limiter_get() is rate_limiter_get()


def test_a_rate_of_zero_means_no_limit(settings) -> None:
    settings.SMS_RATE_LIMIT = 0

    assert isinstance(rate_limiter_get(), UnlimitedRateLimiter)


def test_a_non_redis_broker_is_refused_for_the_shared_limit(settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.CELERY_BROKER_URL = "amqp://guest@localhost//"
    settings.SMS_RATE_LIMIT = 5

    with pytest.raises(ImproperlyConfigured):
        rate_limiter_get()


def test_the_local_limiter_spaces_sends() -> None:
    limiter = LocalRateLimiter(20)  # one every 50 ms

    waited = [limiter.acquire() for _ in range(4)]

    assert waited[0] == 0
    assert sum(waited) >= 0.14


# --- staff's retry -------------------------------------------------------------------------------


def test_retry_queues_a_failed_message_again(django_capture_on_commit_callbacks) -> None:
    message = MessageFactory.create(
        status=Message.Status.FAILED, attempts=8, error_code="9", error_text="No credit"
    )
    MessagePart.objects.create(message=message, vonage_message_id="OLD")

    with (
        mock.patch.object(dispatch, "message_dispatch") as dispatched,
        django_capture_on_commit_callbacks(execute=True),
    ):
        message_retry(message=message)

    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code, message.next_attempt_at) == (
        "queued",
        0,
        "",
        None,
    )
    assert message.parts.get().superseded
    dispatched.assert_called_once_with(message_id=message.pk)


@pytest.mark.parametrize("status", ["queued", "sending", "sent", "delivered"])
def test_only_failed_outbound_messages_can_be_retried(status: str) -> None:
    message = MessageFactory.create(status=status)

    with pytest.raises(ApplicationError) as raised:
        message_retry(message=message)

    assert raised.value.code == "not_retryable"
    message.refresh_from_db()
    assert message.status == status


def test_inbound_messages_cannot_be_retried() -> None:
    message = MessageFactory.create(
        direction=Message.Direction.INBOUND, status=Message.Status.UNROUTED
    )

    with pytest.raises(ApplicationError):
        message_retry(message=message)

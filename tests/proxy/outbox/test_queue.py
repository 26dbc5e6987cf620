"""Queueing outbound SMS: the hand-off after commit, re-dispatch, due rows, staff's retry."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from smsproxy.celery import app as celery_app
from smsproxy.common.errors import ApplicationError
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.outbox.queue import (
    REDISPATCH_AFTER,
    Due,
    message_due_q,
    message_queue_outbound,
    message_retry,
    outbox_due,
    outbox_redispatch,
)
from tests.factories import MessageFactory
from tests.proxy.fixtures import (
    BOB,
    BOB_PROXY,
    INBOUND_URL,
    conversation_make,
    number,
    payload,
    send_webhook,
)

pytestmark = pytest.mark.django_db


def due_ids(**kwargs: Any) -> list[int]:
    return [due.message_id for due in outbox_due(**kwargs)]


@pytest.fixture(autouse=True)
def default_sender_is_ours() -> None:
    """MessageFactory's sender is one of our proxy numbers (delivery refuses any other)."""
    number()


# --- hand-off after commit -----------------------------------------------------------------------


def test_queueing_hands_the_message_over_after_commit(django_capture_on_commit_callbacks) -> None:
    with (
        mock.patch.object(dispatch, "message_dispatch") as dispatched,
        django_capture_on_commit_callbacks(execute=True),
    ):
        message = message_queue_outbound(sender=BOB_PROXY, recipient=BOB, text="hi")
        dispatched.assert_not_called()

    dispatched.assert_called_once_with(message_id=message.pk, low_priority=False)


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
    assert due_ids(now=now) == [never.pk, past.pk, exactly_now.pk]


def test_due_ids_are_oldest_first_and_limited() -> None:
    messages = [MessageFactory.create() for _ in range(3)]

    assert due_ids(limit=2) == [messages[0].pk, messages[1].pk]


def test_due_messages_come_with_their_sender_and_busy_senders_are_left_out() -> None:
    busy, other = "+447700900301", "+447700900302"
    first = MessageFactory.create(sender=busy)
    second = MessageFactory.create(sender=other)
    third = MessageFactory.create(sender=busy)
    fourth = MessageFactory.create(sender=other)

    assert outbox_due() == [
        Due(first.pk, busy),
        Due(second.pk, other),
        Due(third.pk, busy),
        Due(fourth.pk, other),
    ]
    # A number at its own rate limit does not take the batch's room from the others.
    assert outbox_due(limit=2, busy_senders={busy}) == [
        Due(second.pk, other),
        Due(fourth.pk, other),
    ]


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


def test_forwards_and_intros_are_due_before_out_of_session_replies() -> None:
    """Rule 6: replies never delay forwards, even replies queued first."""
    reply = MessageFactory.create(purpose=Message.Purpose.OUT_OF_SESSION)
    forward = MessageFactory.create(purpose=Message.Purpose.CONVERSATION)
    intro = MessageFactory.create(purpose=Message.Purpose.INTRO)

    assert due_ids() == [forward.pk, intro.pk, reply.pk]
    assert due_ids(limit=2) == [forward.pk, intro.pk]


def test_an_out_of_session_reply_is_enqueued_behind_the_forwards(
    settings, django_capture_on_commit_callbacks
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with (
        mock.patch.object(celery_app, "send_task") as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        message_queue_outbound(
            sender=BOB_PROXY, recipient=BOB, text="ended", purpose=Message.Purpose.OUT_OF_SESSION
        )
        message_queue_outbound(sender=BOB_PROXY, recipient=BOB, text="hello")

    # On Redis, priority 9 is served only when nothing of priority 0, 3 or 6 waits; 0 is left
    # to the messages that come back (retries, a number's reserved slot), ahead of new ones.
    assert [call.kwargs["priority"] for call in enqueue.call_args_list] == [
        dispatch.LOW_PRIORITY,
        dispatch.PRIORITY,
    ]
    assert dispatch.RETRY_PRIORITY < dispatch.PRIORITY < dispatch.LOW_PRIORITY == 9


def test_the_sweep_re_enqueues_replies_behind_the_forwards_too() -> None:
    old = timezone.now() - REDISPATCH_AFTER - timedelta(seconds=1)
    reply = MessageFactory.create(purpose=Message.Purpose.OUT_OF_SESSION)
    forward = MessageFactory.create()
    Message.objects.update(updated_at=old)

    with mock.patch.object(dispatch, "message_dispatch") as dispatched:
        outbox_redispatch()

    assert dispatched.call_args_list == [
        mock.call(message_id=reply.pk, low_priority=True),
        mock.call(message_id=forward.pk, low_priority=False),
    ]

"""Helpers the outbox tests share: queued messages, Vonage's answers, the SQL run, Celery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
from django.conf import settings as django_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smsproxy import celery_app
from smsproxy.proxy.models import Message, MessagePart
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.stale import stale_sending_after
from tests.factories import MessageFactory
from tests.proxy.fixtures import BOB, BOB_PROXY, SMS_SEND_URL, number, vonage_answer


def statements(context: CaptureQueriesContext) -> list[str]:
    """The SQL run, without transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [
        query["sql"]
        for query in context.captured_queries
        if not query["sql"].upper().startswith(control)
    ]


def queued(**fields) -> Message:
    defaults = {"sender": BOB_PROXY, "recipient": BOB, "text": "Where are you?"}
    message = MessageFactory.create(**{**defaults, **fields})
    number(message.sender)
    return message


def answer_ok(vonage: responses.RequestsMock, message: Message, name: str = "sms_send_ok") -> None:
    vonage.add(responses.POST, SMS_SEND_URL, json=vonage_answer(name, CLIENT_REF=str(message.pk)))


def answer_status(vonage: responses.RequestsMock, status: str, text: str) -> None:
    vonage.add(
        responses.POST,
        SMS_SEND_URL,
        json=vonage_answer("sms_send_error", STATUS=status, ERROR_TEXT=text),
    )


def sent_form(vonage: responses.RequestsMock, index: int = 0) -> dict[str, str]:
    body = vonage.calls[index].request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {key: values[0] for key, values in parse_qs(text).items()}


def stuck(**fields) -> Message:
    message = queued(**fields)
    message_claim(message_id=message.pk, now=timezone.now())
    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - stale_sending_after() - timedelta(seconds=1)
    )
    return message


def sent(*part_ids: str, status: str = Message.Status.SENT) -> Message:
    # The numbers of the saved receipt: Bob's proxy number sent it to Bob.
    message = MessageFactory.create(status=status, sender=BOB_PROXY, recipient=BOB)
    for part_id in part_ids:
        MessagePart.objects.create(message=message, vonage_message_id=part_id)
    return message


BROKER_URL: str = getattr(django_settings, "TEST_CELERY_BROKER_URL", "")


needs_broker = pytest.mark.skipif(
    not BROKER_URL, reason="CELERY_BROKER_URL (a Redis database the tests may use) is not set"
)


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point the Celery app at `url` for the block (its connection pools are built afresh)."""

    def reset_pools() -> None:
        from kombu import pools

        amqp = celery_app.__dict__.get("amqp")
        for owner, attribute in ((celery_app, "_pool"), (amqp, "_producer_pool")):
            pool = getattr(owner, attribute, None) if owner is not None else None
            if pool is not None:
                pool.force_close_all()
                setattr(owner, attribute, None)
        # kombu keeps the app's pool in a registry by connection: a second block on the same
        # URL would be handed the closed one.
        pools.reset()

    previous = celery_app.conf.broker_url
    celery_app.conf.update(broker_url=url)
    reset_pools()
    try:
        yield
    finally:
        celery_app.conf.update(broker_url=previous)
        reset_pools()

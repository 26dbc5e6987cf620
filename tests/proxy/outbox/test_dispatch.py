"""The hand-off to a dispatcher: nothing for the embedded worker, the task by name for Celery."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any
from unittest import mock

import pytest
from django.db import connections
from django.test import Client

from smsproxy.celery import app as celery_app
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import dispatch
from tests.proxy.fixtures import INBOUND_URL, conversation_make, number, payload, send_webhook
from tests.proxy.outbox.helpers import celery_broker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_sender_is_ours() -> None:
    """MessageFactory's sender is one of our proxy numbers (delivery refuses any other)."""
    number()


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A "Redis" that accepts connections and never answers (frozen, or half-open behind NAT)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(2)
        for connection in accepted:
            connection.close()
        server.close()


def test_without_a_broker_dispatch_leaves_the_row_to_the_poller(settings) -> None:
    settings.CELERY_BROKER_URL = ""
    with mock.patch.object(celery_app, "send_task") as enqueue:
        dispatch.message_dispatch(message_id=1)

    enqueue.assert_not_called()


def test_with_a_broker_dispatch_enqueues_the_task(settings) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with mock.patch.object(celery_app, "send_task") as enqueue:
        dispatch.message_dispatch(message_id=42)

    # By name: deployed workers know the task as this.
    assert enqueue.call_args.args == ("smsproxy.proxy.deliver_message",)
    assert enqueue.call_args.kwargs["args"] == (42,)


def test_a_broker_outage_does_not_fail_the_caller(settings, caplog) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with mock.patch.object(celery_app, "send_task", side_effect=ConnectionError("down")):
        dispatch.message_dispatch(message_id=42)

    assert "sweep will enqueue it again" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["refusing", "silent"])
def test_the_webhook_answers_in_time_and_keeps_the_forward_when_the_broker_is_down(
    settings, caplog, silent_broker: str, broker: str
) -> None:
    url = silent_broker if broker == "silent" else "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = url
    conversation_make()

    answers: list[Any] = []

    def deliver_webhook() -> None:
        try:
            answers.append(send_webhook(Client(), INBOUND_URL, payload("inbound_sms_text"), "form"))
        finally:
            connections.close_all()

    with celery_broker(url):
        # In a thread, so that a hand-off blocked on the broker fails the test, not hangs it.
        webhook = threading.Thread(target=deliver_webhook, daemon=True)
        webhook.start()
        # Well inside the ~15 s Vonage waits (the broker's socket timeouts bound each attempt).
        webhook.join(10)
        assert not webhook.is_alive(), "the webhook is still waiting for the broker"

    assert answers[0].status_code == HTTPStatus.OK
    forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert forward.status == Message.Status.QUEUED  # committed: the sweep enqueues it later
    assert "sweep will enqueue it again" in caplog.text

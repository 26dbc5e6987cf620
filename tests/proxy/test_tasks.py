"""Delivery on Celery: the tasks, and a real worker on Redis (needs CELERY_BROKER_URL).

The real-worker test runs when the suite is started with CELERY_BROKER_URL pointing at a Redis
database it may empty (tests/settings.py moves it to TEST_CELERY_BROKER_URL), as `.ci/run`
does; it is skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from celery.signals import task_postrun, task_prerun
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from smsproxy import celery_app
from smsproxy.celery import database_connections_checked
from smsproxy.gateway import get_provider
from smsproxy.gateway.base import SendResult, TransientProviderError
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.outbox.claim import message_claim
from smsproxy.proxy.outbox.stale import stale_sending_after
from smsproxy.proxy.tasks import deliver_events, deliver_message, outbox_sweep
from tests.factories import MessageFactory
from tests.proxy.fixtures import INBOUND_URL, conversation_make, number, payload, send_webhook
from tests.proxy.outbox.helpers import BROKER_URL, celery_broker, needs_broker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_sender_is_ours() -> None:
    """MessageFactory's sender is one of our proxy numbers (delivery refuses any other)."""
    number()


class CountingProvider:
    """The configured provider, counting sends (shared by every thread of the test)."""

    sends: list[dict[str, Any]] = []

    def send_sms(self, **kwargs: Any) -> SendResult:
        CountingProvider.sends.append(kwargs)
        return get_provider().send_sms(**kwargs)


# --- the tasks, run in-process -------------------------------------------------------------------


def test_deliver_message_sends_through_the_shared_delivery_function(settings) -> None:
    settings.SMS_RATE_LIMIT = 0
    message = MessageFactory.create()

    assert deliver_message(message.pk) == "sent"
    assert deliver_message(message.pk) == "skipped"  # a duplicate task
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_deliver_message_schedules_its_own_retry(settings, monkeypatch) -> None:
    settings.SMS_RATE_LIMIT = 0

    class Throttled:
        def send_sms(self, **kwargs: Any) -> SendResult:
            raise TransientProviderError("Throughput Rate Exceeded", "1")

    monkeypatch.setattr(delivery, "get_provider", Throttled)
    message = MessageFactory.create()

    with mock.patch.object(deliver_message, "apply_async") as enqueue:
        assert deliver_message(message.pk) == "retry"

    message.refresh_from_db()
    assert enqueue.call_args.kwargs == {
        "args": (message.pk,),
        "eta": message.next_attempt_at,
        "priority": dispatch.RETRY_PRIORITY,  # ahead of the newly queued messages
    }


def test_a_throttled_reply_is_rescheduled_behind_the_forwards(settings, monkeypatch) -> None:
    settings.SMS_RATE_LIMIT = 0

    class Throttled:
        def send_sms(self, **kwargs: Any) -> SendResult:
            raise TransientProviderError("Throughput Rate Exceeded", "1")

    monkeypatch.setattr(delivery, "get_provider", Throttled)
    reply = MessageFactory.create(purpose=Message.Purpose.OUT_OF_SESSION)

    with mock.patch.object(deliver_message, "apply_async") as enqueue:
        assert deliver_message(reply.pk) == "retry"

    assert enqueue.call_args.kwargs["priority"] == dispatch.LOW_PRIORITY
    reply.refresh_from_db()
    assert reply.attempts == 0  # a throttle uses no attempt


def test_the_task_logs_no_phone_number(settings, caplog) -> None:
    settings.SMS_RATE_LIMIT = 0
    message = MessageFactory.create(recipient="+881612345678")

    with caplog.at_level("INFO", logger="smsproxy.proxy.tasks"):
        assert deliver_message(message.pk) == "failed"

    assert "recipient_not_mobile" in caplog.text
    assert "+881******678" in caplog.text
    assert "881612345678" not in caplog.text


def test_outbox_sweep_settles_what_the_hand_off_missed() -> None:
    stuck = MessageFactory.create()
    message_claim(message_id=stuck.pk, now=timezone.now())
    Message.objects.filter(pk=stuck.pk).update(
        claimed_at=timezone.now() - stale_sending_after() - timedelta(seconds=1)
    )
    lost = MessageFactory.create()
    Message.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    conversation_make(expires_at=timezone.now() - timedelta(seconds=1))

    with mock.patch.object(dispatch, "message_dispatch") as dispatched:
        summary = outbox_sweep()

    assert summary == {"recovered": 1, "concat_flushed": 0, "expired": 1, "redispatched": 1}
    # The re-queued stuck row at once, the lost one by the redispatch.
    assert [c.kwargs["message_id"] for c in dispatched.call_args_list] == [stuck.pk, lost.pk]


def test_a_worker_finds_the_tasks_by_their_names() -> None:
    """A fresh process, as a worker starts: autodiscovery registers both deployed task names.

    Nothing in the outbox imports the tasks module (dispatch enqueues by name), so only
    `autodiscover_tasks()` loads it.
    """
    script = (
        "import django; django.setup()\n"
        "import sys\n"
        "from smsproxy import celery_app\n"
        "assert 'smsproxy.proxy.tasks' not in sys.modules\n"
        "celery_app.loader.import_default_modules()\n"
        "print(' '.join(sorted(celery_app.tasks)))\n"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    registered = run.stdout.split()
    assert {"smsproxy.proxy.deliver_message", "smsproxy.proxy.outbox_sweep"} <= set(registered)


def test_the_beat_schedule_runs_the_sweep() -> None:
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {
        outbox_sweep.name,
        deliver_events.name,
    }


def test_the_celery_app_has_every_celery_setting_under_celerys_own_name() -> None:
    names = [name for name in dir(django_settings) if name.startswith("CELERY_")]

    assert {"CELERY_TASK_ROUTES", "CELERY_BROKER_TRANSPORT_OPTIONS", "CELERY_BEAT_SCHEDULE"} <= set(
        names
    )
    for name in names:
        if name != "CELERY_BROKER_URL":  # the Redis tests point the app at their own database
            key = name.removeprefix("CELERY_").lower()
            assert celery_app.conf[key] == getattr(django_settings, name), name
    assert celery_app.conf.task_acks_late is True
    assert celery_app.conf.task_routes["smsproxy.proxy.deliver_events"] == {"queue": "events"}


# --- a real worker on Redis ----------------------------------------------------------------------


@pytest.mark.celery
@needs_broker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_a_duplicated_text_exactly_once(
    settings, monkeypatch, live_server
) -> None:
    from celery.contrib.testing.worker import start_worker

    settings.CELERY_BROKER_URL = BROKER_URL
    settings.SMS_RATE_LIMIT = 50
    settings.SANDBOX_DELIVERY_RECEIPTS = True
    settings.PUBLIC_BASE_URL = live_server.url  # where the sandbox sends its receipt
    CountingProvider.sends = []
    monkeypatch.setattr(delivery, "get_provider", CountingProvider)
    # On PostgreSQL four worker threads race for the duplicated tasks; SQLite's in-memory test
    # database does not take concurrent writers, so there one worker takes them in turn.
    racing = connection.vendor == "postgresql"
    with celery_broker(BROKER_URL):
        celery_app.control.purge()
        conversation_make()
        client = Client()
        # Vonage delivers the webhook twice; each copy commits (and enqueues) before it answers.
        for _ in range(2):
            response = send_webhook(client, INBOUND_URL, payload("inbound_sms_text"), "form")
            assert response.status_code == HTTPStatus.OK
        forward = Message.objects.get(direction=Message.Direction.OUTBOUND)
        for _ in range(3):  # and the task is enqueued again: the sweep, a redelivery, ...
            deliver_message.delay(forward.pk)
        enqueued = 4  # the first webhook's hand-off and the three above

        finished: list[tuple[tuple[Any, ...], str]] = []
        finished_lock = threading.Lock()

        def count_finished(task: Any, args: tuple[Any, ...], retval: Any, **_: Any) -> None:
            if task.name == deliver_message.name:
                with finished_lock:
                    finished.append((tuple(args), retval))

        task_postrun.connect(count_finished, weak=False)
        try:
            with start_worker(
                celery_app,
                pool="threads" if racing else "solo",
                concurrency=4 if racing else 1,
                perform_ping_check=False,
                shutdown_timeout=20,
            ):
                # Until every enqueued task has run (not merely the first to send), then the
                # receipt that the sandbox feeds back a moment after the send.
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and (
                    len(finished) < enqueued or forward.status != Message.Status.DELIVERED
                ):
                    time.sleep(0.1)
                    forward.refresh_from_db()
        finally:
            task_postrun.disconnect(count_finished)

    # Every enqueued task ran; exactly one sent, every other found nothing to claim (a broker
    # redelivery on top, seen once in CI on PostgreSQL, is skipped the same way).
    outcomes = sorted(outcome for _args, outcome in finished)
    assert {args for args, _outcome in finished} == {(forward.pk,)}
    assert len(outcomes) >= enqueued
    assert outcomes == ["sent"] + ["skipped"] * (len(outcomes) - 1)
    assert forward.status == Message.Status.DELIVERED
    assert len(CountingProvider.sends) == 1
    assert CountingProvider.sends[0]["client_ref"] == str(forward.pk)
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


@pytest.mark.celery
@needs_broker
def test_a_message_that_comes_back_is_taken_off_the_queue_before_the_backlog(
    settings, monkeypatch
) -> None:
    """A worker holds an eta task until its time only once it took it off the list: behind a
    backlog, a retry "about a second later" (or a number's reserved slot) came after all of it
    (bench/throttling.py)."""
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.SMS_RATE_LIMIT = 0

    class Throttled:
        def send_sms(self, **kwargs: Any) -> SendResult:
            raise TransientProviderError("Throughput Rate Exceeded", "1")

    monkeypatch.setattr(delivery, "get_provider", Throttled)
    backlog = [MessageFactory.create() for _ in range(3)]
    throttled = MessageFactory.create()
    with celery_broker(BROKER_URL):
        celery_app.control.purge()
        for message in backlog:
            dispatch.message_dispatch(message_id=message.pk)
        assert deliver_message(throttled.pk) == "retry"  # re-enqueues itself, with an eta

        taken = []
        with celery_app.connection_for_read() as broker:
            queue = broker.SimpleQueue("celery")
            for _ in range(4):
                delivered = queue.get(timeout=5)
                args, _kwargs, _embed = delivered.decode()
                taken.append((args[0], bool(delivered.headers.get("eta"))))
                delivered.ack()
            queue.close()

    assert taken == [(throttled.pk, True)] + [(message.pk, False) for message in backlog]


# --- the workers' database connections -----------------------------------------------------------


def worker_task() -> Any:
    """What Celery passes to its task signals for a task a worker runs (not eagerly)."""
    return SimpleNamespace(request=SimpleNamespace(is_eager=False))


def test_celery_workers_keep_their_database_connection_from_task_to_task() -> None:
    from celery.fixups.django import DjangoWorkerFixup  # type: ignore[attr-defined]

    fixup = DjangoWorkerFixup(celery_app)
    with mock.patch.object(fixup, "_close_database") as close:
        for _ in range(1000):
            fixup.on_task_prerun(sender=worker_task())
            fixup.on_task_postrun(sender=worker_task())

    assert close.call_count == 0


def test_before_each_task_a_broken_connection_is_replaced_and_a_sound_one_kept() -> None:
    sound, broken = mock.Mock(in_atomic_block=False), mock.Mock(in_atomic_block=False)
    sound.is_usable.return_value, broken.is_usable.return_value = True, False

    with mock.patch("django.db.connections.all", return_value=[sound, broken]):
        task_prerun.send(sender=deliver_message, task=worker_task(), task_id="t", args=())

    sound.close_if_unusable_or_obsolete.assert_called_once_with()  # CONN_MAX_AGE, errors
    sound.close.assert_not_called()
    broken.close.assert_called_once_with()


def test_an_eager_task_leaves_the_connections_alone() -> None:
    connection = mock.Mock(in_atomic_block=False)
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))

    with mock.patch("django.db.connections.all", return_value=[connection]):
        database_connections_checked(task=eager)

    connection.close_if_unusable_or_obsolete.assert_not_called()

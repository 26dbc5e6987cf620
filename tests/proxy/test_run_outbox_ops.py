"""The embedded worker for operators: its heartbeat (read by /readyz) and its JSON log lines."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from smsproxy.common.heartbeat import HEARTBEAT_EVERY, OUTBOX_WORKER
from smsproxy.common.models import WorkerHeartbeat
from smsproxy.proxy.management.commands import run_outbox as command_module
from tests.factories import MessageFactory
from tests.proxy.fixtures import number

pytestmark = pytest.mark.django_db


class Clock:
    """`timezone` for the command: each call of now() is `step` later than the one before."""

    def __init__(self, step: timedelta) -> None:
        self.current = timezone.now()
        self.step = step

    def now(self) -> datetime:
        self.current += self.step
        return self.current


def stop_after_polls(passes: int) -> Callable[..., list[object]]:
    """An `outbox_due` that finds nothing and stops the loop (SIGTERM) at its `passes`-th poll."""
    polls = 0

    def due_ids(*, limit: int, busy_senders: object = ()) -> list[object]:
        nonlocal polls
        polls += 1
        if polls == passes:
            os.kill(os.getpid(), signal.SIGTERM)
        return []

    return due_ids


# The loop's close_old_connections() would close a test transaction's connection.
@pytest.mark.django_db(transaction=True)
def test_the_loop_beats_at_most_every_heartbeat_interval(monkeypatch) -> None:
    beats: list[datetime] = []
    due_ids = stop_after_polls(6)

    clock = Clock(step=HEARTBEAT_EVERY * 0.4)  # every pass 4 s later: a beat every third pass
    record = command_module.heartbeat_record

    def heartbeat(*, name: str, now: datetime | None = None) -> None:
        assert name == OUTBOX_WORKER and now is not None
        beats.append(now)
        if len(beats) > 10:  # the loop is not polling (a failing pass): stop it anyway
            os.kill(os.getpid(), signal.SIGTERM)
        record(name=name, now=now)

    monkeypatch.setattr(command_module, "timezone", clock)
    monkeypatch.setattr(command_module, "heartbeat_record", heartbeat)
    monkeypatch.setattr(command_module, "outbox_due", due_ids)
    monkeypatch.setattr(command_module, "_wait", lambda stop, seconds: stop.is_set())
    call_command("run_outbox", "--interval", "0.5", stdout=StringIO())

    assert len(beats) == 2  # passes 1 and 4 of 6
    assert beats[1] - beats[0] >= HEARTBEAT_EVERY
    assert WorkerHeartbeat.objects.get(name=OUTBOX_WORKER).seen_at == beats[-1]


@pytest.mark.django_db(transaction=True)
def test_the_loop_looks_for_provisioning_jobs_at_most_every_second(monkeypatch) -> None:
    looked: list[datetime] = []
    due_ids = stop_after_polls(6)
    clock = Clock(step=command_module.PROVISIONING_EVERY * 0.4)

    def provisioning() -> list[object]:
        looked.append(clock.current)
        return []

    monkeypatch.setattr(command_module, "timezone", clock)
    monkeypatch.setattr(command_module, "provisioning_jobs_run_pending", provisioning)
    monkeypatch.setattr(command_module, "outbox_due", due_ids)
    monkeypatch.setattr(command_module, "_wait", lambda stop, seconds: stop.is_set())
    call_command("run_outbox", "--interval", "0.5", stdout=StringIO())

    # Six passes 0.4 s apart, as under a steady stream of SMS: passes 1 and 4 look.
    assert len(looked) == 2
    assert looked[1] - looked[0] >= command_module.PROVISIONING_EVERY


@pytest.mark.django_db(transaction=True)
def test_with_json_logs_every_line_of_the_worker_is_a_log_record(settings, caplog) -> None:
    settings.LOG_FORMAT = "json"
    settings.SANDBOX_DELIVERY_RECEIPTS = False
    number()
    message = MessageFactory.create()
    caplog.set_level(logging.INFO, logger="smsproxy.proxy.management.commands.run_outbox")
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM))
    out, err = StringIO(), StringIO()
    timer.start()
    try:
        call_command("run_outbox", "--interval", "0.05", stdout=out, stderr=err)
    finally:
        timer.cancel()

    assert out.getvalue() == "" and err.getvalue() == ""  # nothing beside the log
    sends = [record for record in caplog.records if getattr(record, "event", "") == "send"]
    assert [(r.outcome, r.message_id) for r in sends] == [("sent", message.pk)]
    messages = [record.getMessage() for record in caplog.records]
    assert any(text.startswith("Outbox worker started") for text in messages)
    assert any(text == "Outbox worker stopped." for text in messages)

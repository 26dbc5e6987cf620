"""The embedded worker: `manage.py run_outbox`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from smsproxy.proxy.management.commands import run_outbox as command_module
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

    # Numbers masked: the worker's output ends up in log files.
    assert f"sent #{first.pk} +44*******200 → +44*******002: 1 part: SANDBOX-" in output
    assert BOB not in output and BOB_PROXY not in output
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
def test_the_loop_stops_cleanly_on_sigterm(settings, monkeypatch) -> None:
    settings.SANDBOX_DELIVERY_RECEIPTS = False
    message = MessageFactory.create()
    # SIGTERM comes once the message is sent (a fixed delay raced the first pass on a busy
    # machine), while the worker goes on polling.
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGTERM))
    deliver = command_module.message_deliver

    def deliver_then_signal(*, message_id: int) -> Any:
        result = deliver(message_id=message_id)
        if timer.ident is None:  # not started yet
            timer.start()
        return result

    monkeypatch.setattr(command_module, "message_deliver", deliver_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        output = run_outbox("--interval", "0.05")
    finally:
        timer.cancel()

    assert "Outbox worker started" in output
    assert f"sent #{message.pk}" in output
    assert "Received SIGTERM" in output
    assert output.rstrip().endswith("Outbox worker stopped.")
    assert signal.getsignal(signal.SIGTERM) == previous


# --- outages, logs and shutdown ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_is_waited_out_with_backoff_and_one_line_each_way(
    monkeypatch, caplog
) -> None:
    polls = 0

    def due_ids(*, limit: int, busy_senders: object = ()) -> list[object]:
        nonlocal polls
        polls += 1
        if polls <= 7:
            raise OperationalError("connection to server at 127.0.0.1 port 5432 failed")
        if polls == 9:
            os.kill(os.getpid(), signal.SIGTERM)
        return []

    waits: list[float] = []

    def wait(stop: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        return stop.is_set()

    monkeypatch.setattr(command_module, "outbox_due", due_ids)
    monkeypatch.setattr(command_module, "_wait", wait)
    errors = StringIO()
    call_command("run_outbox", "--interval", "0.5", stdout=StringIO(), stderr=errors)

    # Exponential, capped, while the database is down; the poll interval once it is back.
    assert waits == [1, 2, 4, 8, 16, 30, 30, 0.5, 0.5]
    lines = errors.getvalue().splitlines()
    assert lines == [
        "Outbox worker: database unreachable: connection to server at 127.0.0.1 port 5432 failed",
        "Outbox worker: database back",
    ]
    assert "Traceback" not in caplog.text
    assert caplog.text.count("database unreachable") == 1


def test_every_number_in_the_workers_output_is_masked() -> None:
    number("+447700900200")
    refused = MessageFactory.create(sender="+447700900200", recipient="+881612345678")
    ours = MessageFactory.create(sender=BOB_PROXY, recipient=BOB)

    output = run_outbox("--once")

    assert f"failed #{refused.pk} +44*******200 → +881******678" in output
    assert f"sent #{ours.pk} +44*******200 → +44*******002" in output
    for full in ("+447700900200", "+881612345678", BOB, "447700900200", "881612345678"):
        assert full not in output


def test_forwards_are_sent_before_a_reply_queued_earlier(settings) -> None:
    settings.SANDBOX_DELIVERY_RECEIPTS = False
    reply = MessageFactory.create(purpose=Message.Purpose.OUT_OF_SESSION, text="ended")
    forwards = [MessageFactory.create(text=f"forward {n}") for n in range(3)]

    output = run_outbox("--once")

    sent = [line.split()[1] for line in output.splitlines() if line.startswith("sent #")]
    assert sent == [f"#{m.pk}" for m in [*forwards, reply]]


def _worker(database_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_outbox", "--interval", "0.2"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("database", ["up", "down"])
def test_sigterm_stops_the_worker_process_within_seconds(tmp_path, database: str) -> None:
    """A real process and a real signal; with the database down, during the outage's backoff."""
    if database == "up":
        path = tmp_path / "outbox.sqlite3"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=django_settings.BASE_DIR,
            env={**env, "DATABASE_URL": f"sqlite:///{path}"},
            check=True,
            capture_output=True,
            timeout=300,
        )
    else:
        path = tmp_path / "no-such-directory" / "outbox.sqlite3"
    worker = _worker(f"sqlite:///{path}")
    # Bounds the test if the worker never gets as far as the line awaited below.
    watchdog = threading.Timer(120, worker.kill)
    watchdog.start()
    try:
        assert worker.stdout is not None and worker.stderr is not None
        assert "Outbox worker started" in worker.stdout.readline()
        if database == "down":
            assert "database unreachable" in worker.stderr.readline()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=15)
    finally:
        watchdog.cancel()
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert worker.returncode == 0, err
    assert "Received SIGTERM" in out
    assert out.rstrip().endswith("Outbox worker stopped.")
    assert "Traceback" not in err

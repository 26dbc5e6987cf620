"""The embedded worker's senders: several messages in flight, one per number, and numbers at
their own rate limit (SMS_RATE_LIMIT_PER_SENDER) left in the queue rather than claimed."""

from __future__ import annotations

import os
import signal
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from smsproxy.proxy.management.commands import run_outbox as command_module
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox.ratelimit import LocalRateLimiter
from tests.factories import MessageFactory
from tests.proxy.fixtures import ALICE, ALICE_PROXY, BOB, BOB_PROXY, number
from tests.proxy.outbox.test_sender_cap import FakeClock

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def senders_are_ours() -> None:
    number(ALICE_PROXY)
    number(BOB_PROXY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def capped(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> LocalRateLimiter:
    """One SMS a second per number (and a shared rate that never holds anything up)."""
    limiter = LocalRateLimiter(1000, per_sender=1, clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    monkeypatch.setattr(command_module, "rate_limiter_get", lambda: limiter)
    return limiter


def run_outbox(*args: str) -> str:
    out = StringIO()
    call_command("run_outbox", *args, stdout=out)
    return out.getvalue()


def sent_order(output: str) -> list[int]:
    return [int(line.split()[1][1:]) for line in output.splitlines() if line.startswith("sent #")]


def test_a_busy_numbers_message_is_left_queued_not_claimed_and_put_back(
    capped: LocalRateLimiter,
) -> None:
    first = MessageFactory.create(sender=BOB_PROXY, recipient=BOB, text="one")
    second = MessageFactory.create(sender=BOB_PROXY, recipient=BOB, text="two")
    other = MessageFactory.create(sender=ALICE_PROXY, recipient=ALICE, text="hello")

    output = run_outbox("--once")

    assert sent_order(output) == [first.pk, other.pk]
    second.refresh_from_db()
    # Untouched: no attempt counted and given back, no due time written; it goes next, in
    # its place, once the number's second is up.
    assert (second.status, second.attempts, second.next_attempt_at, second.claimed_at) == (
        Message.Status.QUEUED,
        0,
        None,
        None,
    )
    assert capped.sender_wait(BOB_PROXY) > 0


@pytest.mark.django_db(transaction=True)
def test_the_worker_waits_for_a_busy_number_rather_than_the_poll_interval(
    capped: LocalRateLimiter, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped.acquire(BOB_PROXY)  # its last SMS went a quarter of a second ago
    clock.now += 0.25
    waiting = MessageFactory.create(sender=BOB_PROXY, recipient=BOB)
    waits: list[float] = []

    def wait(stop: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        os.kill(os.getpid(), signal.SIGTERM)
        return stop.is_set()

    monkeypatch.setattr(command_module, "_wait", wait)
    run_outbox("--interval", "5")

    assert waits == [pytest.approx(0.75)]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == (Message.Status.QUEUED, 0)


@pytest.mark.django_db(transaction=True)
def test_the_loop_sends_several_at_once_each_numbers_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = [
        MessageFactory.create(sender=sender, recipient=recipient, text=f"text {n}")
        for n in range(4)
        for sender, recipient in ((BOB_PROXY, BOB), (ALICE_PROXY, ALICE))
    ]
    threads: set[str] = set()
    deliver = command_module.message_deliver

    def deliver_on(*, message_id: int) -> delivery.DeliveryResult:
        threads.add(threading.current_thread().name)
        return deliver(message_id=message_id)

    def wait(stop: threading.Event, seconds: float) -> bool:
        # Nothing left to hand out and nothing in flight: the backlog is done.
        os.kill(os.getpid(), signal.SIGTERM)
        return stop.is_set()

    monkeypatch.setattr(command_module, "message_deliver", deliver_on)
    monkeypatch.setattr(command_module, "_wait", wait)
    output = run_outbox("--concurrency", "3")

    # SQLite takes one writer at a time: there the worker sends one message at a time.
    parallel = connection.vendor != "sqlite"
    assert f"{3 if parallel else 1} message(s) at once" in output
    order = sent_order(output)
    assert sorted(order) == sorted(message.pk for message in messages)
    for sender in (BOB_PROXY, ALICE_PROXY):
        theirs = [message.pk for message in messages if message.sender == sender]
        assert [pk for pk in order if pk in theirs] == theirs
    assert Message.objects.filter(status=Message.Status.SENT).count() == len(messages)
    assert (threading.current_thread().name not in threads) == parallel
    assert output.rstrip().endswith("Outbox worker stopped.")


def test_concurrency_must_be_at_least_one() -> None:
    with pytest.raises(CommandError, match="--concurrency"):
        run_outbox("--concurrency", "0")

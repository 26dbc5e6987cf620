"""SMS_RATE_LIMIT_PER_SENDER never makes a worker sleep for one number: a message whose number
is at its cap goes back to the queue, due when its token is there, and the worker sends other
numbers' messages meanwhile (bench/throttling.py measured 6 a second instead of 30 before)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
import responses
from django.utils import timezone

from smsproxy.common.metrics import SENDS
from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox import dispatch
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.outbox.ratelimit import (
    _MAX_SLEEP,
    HELD,
    RESERVED,
    LocalRateLimiter,
    RedisRateLimiter,
    SenderBusy,
    _wait_for_token,
)
from smsproxy.proxy.tasks import deliver_message
from tests.proxy.outbox.helpers import BROKER_URL, answer_ok, needs_broker, queued

pytestmark = pytest.mark.django_db

US_LONG_NUMBER = "+15555550100"
OTHER_NUMBER = "+15555550101"


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(monkeypatch, clock: FakeClock) -> LocalRateLimiter:
    limiter = LocalRateLimiter(100, per_sender=1, clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    return limiter


def test_a_busy_sender_is_refused_at_once_and_nothing_is_taken(
    limiter: LocalRateLimiter, clock: FakeClock
) -> None:
    limiter.acquire(US_LONG_NUMBER, defer_busy_sender=True)
    clock.now += 0.2

    with pytest.raises(SenderBusy) as busy:
        limiter.acquire(US_LONG_NUMBER, defer_busy_sender=True)

    assert busy.value.wait == pytest.approx(0.8)
    assert clock.slept == 0
    # Another number waits only for the shared bucket (1/100 s, refilled by now).
    assert limiter.acquire(OTHER_NUMBER, defer_busy_sender=True) == 0
    # The refused send took no token: once its second is up, the number sends at once.
    clock.now += 0.8
    assert limiter.acquire(US_LONG_NUMBER, defer_busy_sender=True) == 0


def test_without_deferral_the_limiter_still_waits_for_the_sender(
    limiter: LocalRateLimiter, clock: FakeClock
) -> None:
    limiter.acquire(US_LONG_NUMBER)

    assert limiter.acquire(US_LONG_NUMBER) == pytest.approx(1.0)


def test_a_message_of_a_number_at_its_cap_is_deferred_and_the_next_one_goes_out(
    vonage: responses.RequestsMock, limiter: LocalRateLimiter, clock: FakeClock
) -> None:
    first = queued(sender=US_LONG_NUMBER)
    second = queued(sender=US_LONG_NUMBER, error_code="1", error_text="Throttled before")
    other = queued(sender=OTHER_NUMBER)
    answer_ok(vonage, first)
    answer_ok(vonage, other)
    assert message_deliver(message_id=first.pk).outcome == Outcome.SENT
    before = timezone.now()
    deferred = SENDS.labels(outcome="deferred", status="none")
    counted = deferred._value.get()

    result = message_deliver(message_id=second.pk)

    assert result.outcome == Outcome.DEFERRED
    # Counted in /metrics as deferred, Vonage not asked.
    assert deferred._value.get() == counted + 1
    second.refresh_from_db()
    assert second.status == Message.Status.QUEUED
    assert second.attempts == 0  # the claim's attempt given back
    assert second.claimed_at is None
    assert second.next_attempt_at is not None
    assert timedelta(0) < second.next_attempt_at - before <= timedelta(seconds=1.1)
    # Not a failure: what the last real attempt said stays.
    assert (second.error_code, second.error_text) == ("1", "Throttled before")
    assert clock.slept == 0  # the worker did not sleep for that number
    assert message_deliver(message_id=other.pk).outcome == Outcome.SENT
    assert len(vonage.calls) == 2  # the deferred message was not sent


def test_a_deferred_message_is_sent_once_due(
    vonage: responses.RequestsMock, limiter: LocalRateLimiter, clock: FakeClock, monkeypatch
) -> None:
    first, second = queued(sender=US_LONG_NUMBER), queued(sender=US_LONG_NUMBER)
    answer_ok(vonage, first)
    answer_ok(vonage, second)
    message_deliver(message_id=first.pk)
    assert message_deliver(message_id=second.pk).outcome == Outcome.DEFERRED
    second.refresh_from_db()
    assert second.next_attempt_at is not None

    # Not due yet: nobody claims it.
    assert message_deliver(message_id=second.pk).outcome == Outcome.SKIPPED
    clock.now += 1.0
    due = second.next_attempt_at
    monkeypatch.setattr(timezone, "now", lambda: due)

    assert message_deliver(message_id=second.pk).outcome == Outcome.SENT
    second.refresh_from_db()
    assert (second.status, second.attempts) == (Message.Status.SENT, 1)


def test_the_celery_task_schedules_a_deferred_message_for_when_it_is_due(
    limiter: LocalRateLimiter, vonage: responses.RequestsMock
) -> None:
    first, second = queued(sender=US_LONG_NUMBER), queued(sender=US_LONG_NUMBER)
    answer_ok(vonage, first)
    deliver_message(first.pk)

    with mock.patch.object(deliver_message, "apply_async") as enqueue:
        assert deliver_message(second.pk) == "deferred"

    second.refresh_from_db()
    assert enqueue.call_args.kwargs == {
        "args": (second.pk,),
        "eta": second.next_attempt_at,
        # Ahead of the backlog: a worker holds an eta task only once it took it off the list.
        "priority": dispatch.RETRY_PRIORITY,
    }


@needs_broker
def test_the_redis_limiter_refuses_a_busy_sender_without_taking_anything() -> None:
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    worker_a = RedisRateLimiter(BROKER_URL, 100, per_sender=1, key=key)
    worker_b = RedisRateLimiter(BROKER_URL, 100, per_sender=1, key=key)
    worker_a.acquire(US_LONG_NUMBER, defer_busy_sender=True)

    with pytest.raises(SenderBusy) as busy:
        worker_b.acquire(US_LONG_NUMBER, defer_busy_sender=True)

    assert 0 < busy.value.wait <= 1
    assert worker_b.acquire(OTHER_NUMBER, defer_busy_sender=True) < 0.1


# --- Celery: a queue per number in Redis ----------------------------------------------------------


def redis_limiter(rate: float = 0) -> tuple[RedisRateLimiter, RedisRateLimiter]:
    """Two workers' limiters on a bucket of their own: `rate` shared (0: none), 1/s per number."""
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    return (
        RedisRateLimiter(BROKER_URL, rate, per_sender=1, key=key),
        RedisRateLimiter(BROKER_URL, rate, per_sender=1, key=key),
    )


def deferred_for(limiter: RedisRateLimiter, ticket: str, sender: str = US_LONG_NUMBER) -> float:
    with pytest.raises(SenderBusy) as busy:
        limiter.acquire(sender, defer_busy_sender=True, ticket=ticket)
    return busy.value.wait


@needs_broker
def test_deferred_messages_of_a_busy_number_get_its_next_slots_in_turn() -> None:
    """Not all "when the token is there": they would all come back at that moment, one would
    be sent and the others put back again, and again (5.5 runs per message, bench)."""
    import redis

    worker_a, worker_b = redis_limiter()
    assert worker_a.acquire(US_LONG_NUMBER, defer_busy_sender=True, ticket="1") == 0

    waits = [deferred_for(worker, ticket) for worker, ticket in ((worker_b, "2"), (worker_a, "3"))]

    assert waits == [pytest.approx(1, abs=0.1), pytest.approx(2, abs=0.1)]
    # The number's token is back (its second is up): a newcomer does not take it from the
    # messages that hold the next slots, it queues behind them.
    client = redis.Redis.from_url(BROKER_URL)
    client.hset(worker_a.sender_key(US_LONG_NUMBER), "tokens", "1")
    assert deferred_for(worker_b, "4") == pytest.approx(3, abs=0.1)
    # The holder of the next slot sends; the following one's token is not there yet, and it
    # keeps its slot (waiting out the rest of the second, not deferred again).
    worker_a.acquire(US_LONG_NUMBER, defer_busy_sender=True, ticket="2")  # no SenderBusy
    _shared_wait, sender_wait, state = worker_b._take(US_LONG_NUMBER, "3")
    assert state == HELD
    assert 0 < sender_wait <= 1
    # Another number is not held up, and without a ticket nothing is reserved.
    assert worker_b.acquire(OTHER_NUMBER, defer_busy_sender=True, ticket="5") == 0
    with pytest.raises(SenderBusy):
        worker_a.acquire(OTHER_NUMBER, defer_busy_sender=True)
    assert deferred_for(worker_a, "6", OTHER_NUMBER) == pytest.approx(1, abs=0.1)
    client.delete(*client.keys(f"{worker_a.key}*"))


@needs_broker
def test_deferred_messages_also_queue_for_the_accounts_slots() -> None:
    """Forty numbers' slots at 1/s each against 30/s on the account: without the account's
    slots, every message came back later than the last, and waited on a worker."""
    import redis

    worker_a, worker_b = redis_limiter(rate=2)  # a slot every 0.5 s on the account
    client = redis.Redis.from_url(BROKER_URL)
    seconds, microseconds = client.time()
    now = seconds + microseconds / 1_000_000
    # Deferred messages hold the account's slots for the next 5 s; this number's, 10 s.
    client.hset(worker_a.key, "horizon", repr(now + 5))
    client.hset(worker_a.sender_key(OTHER_NUMBER), mapping={"horizon": repr(now + 10)})

    # An idle number's message queues behind the account's slots, and takes the next one.
    assert deferred_for(worker_a, "1") == pytest.approx(5, abs=0.1)
    assert deferred_for(worker_b, "2", "+15555550102") == pytest.approx(5.5, abs=0.1)
    # A number whose own queue is longer: its slot is later, and the account's stays free.
    assert deferred_for(worker_b, "3", OTHER_NUMBER) == pytest.approx(10, abs=0.1)
    assert deferred_for(worker_a, "4", "+15555550103") == pytest.approx(6, abs=0.1)
    client.delete(*client.keys(f"{worker_a.key}*"))


def test_a_message_holding_its_numbers_slot_waits_for_the_token_instead_of_going_round() -> None:
    clock = FakeClock()
    answers = iter([(0.0, 0.4, HELD), (0.0, 0.0, "")])

    assert _wait_for_token(lambda: next(answers), clock.sleep, True) == pytest.approx(0.4)
    # Not for longer than a pause: a slow cap per number (one every 10 s) defers it again.
    with pytest.raises(SenderBusy):
        _wait_for_token(lambda: (0.0, _MAX_SLEEP + 9, HELD), clock.sleep, True)
    # A message that was only now given a slot is deferred to it.
    with pytest.raises(SenderBusy):
        _wait_for_token(lambda: (0.0, 0.4, RESERVED), clock.sleep, True)


@needs_broker
def test_delivery_defers_a_busy_numbers_messages_to_successive_slots(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    limiter, _ = redis_limiter()
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    first, second, third = (queued(sender=US_LONG_NUMBER) for _ in range(3))
    answer_ok(vonage, first)
    assert message_deliver(message_id=first.pk).outcome == Outcome.SENT

    assert message_deliver(message_id=second.pk).outcome == Outcome.DEFERRED
    assert message_deliver(message_id=third.pk).outcome == Outcome.DEFERRED

    second.refresh_from_db()
    third.refresh_from_db()
    assert second.next_attempt_at is not None and third.next_attempt_at is not None
    gap = third.next_attempt_at - second.next_attempt_at
    assert timedelta(seconds=0.9) <= gap <= timedelta(seconds=1.1)


# --- telling the embedded worker which numbers are busy -----------------------------------------


def test_the_local_limiter_tells_which_numbers_are_busy_and_for_how_long(
    limiter: LocalRateLimiter, clock: FakeClock
) -> None:
    limiter.acquire(US_LONG_NUMBER)
    clock.now += 0.25
    limiter.acquire(OTHER_NUMBER)
    clock.now += 0.25

    # Looking takes nothing and waits for nothing.
    assert limiter.sender_waits() == {
        US_LONG_NUMBER: pytest.approx(0.5),
        OTHER_NUMBER: pytest.approx(0.75),
    }
    assert limiter.sender_wait(US_LONG_NUMBER) == pytest.approx(0.5)
    assert limiter.sender_wait("+15555550199") == 0  # never sent from
    assert clock.slept == 0
    clock.now += 0.5
    assert limiter.sender_waits() == {OTHER_NUMBER: pytest.approx(0.25)}
    assert limiter.sender_wait(US_LONG_NUMBER) == 0
    assert limiter.acquire(US_LONG_NUMBER, defer_busy_sender=True) == 0


def test_without_a_cap_per_number_no_number_is_busy(clock: FakeClock) -> None:
    limiter = LocalRateLimiter(100, clock=clock, sleep=clock.sleep)
    limiter.acquire(US_LONG_NUMBER)

    assert limiter.sender_waits() == {}
    assert limiter.sender_wait(US_LONG_NUMBER) == 0


def test_the_redis_limiter_does_not_guess_which_numbers_are_busy() -> None:
    # Nothing asked of Redis (no round trip per message): acquire defers a busy number instead.
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", 30, per_sender=1)

    assert limiter.sender_waits() == {}
    assert limiter.sender_wait(US_LONG_NUMBER) == 0

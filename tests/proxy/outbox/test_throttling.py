"""Throttling is not a failure (DESIGN.md §6): a throttled send comes back about a second later
without using an attempt, and the shared rate drops while Vonage throttles and recovers after."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from smsproxy.proxy.models import Message
from smsproxy.proxy.outbox import deliver as delivery
from smsproxy.proxy.outbox.deliver import Outcome, message_deliver
from smsproxy.proxy.outbox.ratelimit import (
    RECOVERY_SECONDS,
    THROTTLE_FLOOR,
    LocalRateLimiter,
)
from tests.proxy.fixtures import SMS_SEND_URL
from tests.proxy.outbox.helpers import answer_ok, answer_status, queued

pytestmark = pytest.mark.django_db


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(monkeypatch, clock: FakeClock) -> LocalRateLimiter:
    limiter = LocalRateLimiter(25, clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(delivery, "rate_limiter_get", lambda: limiter)
    return limiter


def make_due(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_sustained_throttle_fails_nothing_and_the_rate_drops_then_recovers(
    vonage: responses.RequestsMock, limiter: LocalRateLimiter, clock: FakeClock, monkeypatch
) -> None:
    message = queued(max_attempts=3)
    throttles = 200  # far more than max_attempts, and minutes of throttling on the fake clock
    send_times: list[float] = []

    def throttled(request):
        send_times.append(clock())
        return (
            200,
            {},
            '{"message-count": "1", "messages": [{"status": "1", '
            '"error-text": "Throughput Rate Exceeded"}]}',
        )

    vonage.add_callback(responses.POST, SMS_SEND_URL, callback=throttled)
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    rates = []
    for _ in range(throttles):
        result = message_deliver(message_id=message.pk)

        assert result.outcome == Outcome.RETRY
        message.refresh_from_db()
        assert (message.status, message.attempts, message.error_code) == ("queued", 0, "1")
        assert message.next_attempt_at is not None
        # About a second later, jittered.
        wait = message.next_attempt_at - frozen
        assert timedelta(seconds=0.5) <= wait <= timedelta(seconds=1.5)
        rates.append(limiter.current_rate())
        make_due(message)

    # Halved on each throttle, down to the floor, where it stays while the throttling lasts.
    assert rates[0] == 12.5
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] == THROTTLE_FLOOR
    # At the floor, sends are a second apart (on the limiter's clock) at the least.
    gaps = [
        later - earlier for earlier, later in zip(send_times[-20:-1], send_times[-19:], strict=True)
    ]
    assert min(gaps) >= 1 / THROTTLE_FLOOR - 1e-9
    assert clock() - send_times[0] > 60 * 3  # minutes of throttling, none of it real

    vonage.replace(
        responses.POST,
        SMS_SEND_URL,
        json={
            "message-count": "1",
            "messages": [
                {"status": "0", "message-id": "0A000000AFTER001", "message-price": "0.03"}
            ],
        },
    )
    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("sent", 1, "")

    # Throttling stopped: the rate climbs back steadily to SMS_RATE_LIMIT.
    clock.sleep(RECOVERY_SECONDS / 2)
    halfway = limiter.current_rate()
    clock.sleep(RECOVERY_SECONDS / 2)
    assert THROTTLE_FLOOR < halfway < 25
    assert limiter.current_rate() == 25


def test_http_429_is_a_throttle(vonage: responses.RequestsMock, limiter: LocalRateLimiter) -> None:
    message = queued(attempts=4)
    vonage.add(responses.POST, SMS_SEND_URL, status=429, json={"error": "slow down"})

    assert message_deliver(message_id=message.pk).outcome == Outcome.RETRY

    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("queued", 4, "429")
    assert limiter.current_rate() == 12.5


def test_throttles_never_use_up_attempts_but_real_failures_still_do(
    vonage: responses.RequestsMock, limiter: LocalRateLimiter
) -> None:
    message = queued(attempts=7, max_attempts=8)
    for _ in range(20):
        answer_status(vonage, "1", "Throughput Rate Exceeded")
        assert message_deliver(message_id=message.pk).outcome == Outcome.RETRY
        make_due(message)

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 7)

    answer_status(vonage, "5", "Internal Error")
    assert message_deliver(message_id=message.pk).outcome == Outcome.FAILED
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("failed", 8, "5")


def test_a_success_does_not_lower_the_rate(
    vonage: responses.RequestsMock, limiter: LocalRateLimiter
) -> None:
    message = queued()
    answer_ok(vonage, message)

    assert message_deliver(message_id=message.pk).outcome == Outcome.SENT
    assert limiter.current_rate() == 25


# --- the limiter ---------------------------------------------------------------------------------


def test_the_sends_in_flight_when_vonage_began_to_throttle_halve_the_rate_once(
    clock: FakeClock,
) -> None:
    """Two throttled answers 50 ms apart halved 30/s twice, and two Celery workers took 22 s
    to climb back from 7.5/s (bench/throttling.py): sends that went out at the old rate say
    nothing more than the first."""
    limiter = LocalRateLimiter(30, clock=clock, sleep=clock.sleep)
    for _ in range(3):  # three sends in flight
        limiter.acquire()

    for _ in range(3):  # all three throttled
        limiter.throttled()

    assert limiter.current_rate() == 15
    # A send at the new rate, throttled too: Vonage keeps throttling, the rate drops again.
    limiter.acquire()
    limiter.throttled()
    assert limiter.current_rate() == pytest.approx(7.5, abs=0.1)


def test_the_floor_is_never_above_the_configured_rate(clock: FakeClock) -> None:
    limiter = LocalRateLimiter(0.5, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        limiter.throttled()

    assert limiter.current_rate() == 0.5


def test_the_per_sender_cap_spaces_sends_from_one_sender(clock: FakeClock) -> None:
    limiter = LocalRateLimiter(100, per_sender=1, clock=clock, sleep=clock.sleep)
    sent_at: dict[str, list[float]] = {"A": [], "B": []}

    for sender in ("A", "A", "B", "A", "B"):
        limiter.acquire(sender)
        sent_at[sender].append(clock())

    assert [
        b - a for a, b in zip(sent_at["A"][:-1], sent_at["A"][1:], strict=True)
    ] == pytest.approx([1.0, 1.0])
    # Another sender is not held up by A's cap, only by the shared rate (1/100 s).
    assert sent_at["B"][0] - sent_at["A"][1] == pytest.approx(0.01)


def test_without_a_shared_rate_the_per_sender_cap_still_applies(settings) -> None:
    from smsproxy.proxy.outbox.ratelimit import rate_limiter_get

    settings.CELERY_BROKER_URL = ""
    settings.SMS_RATE_LIMIT = 0
    settings.SMS_RATE_LIMIT_PER_SENDER = 1

    limiter = rate_limiter_get()

    assert isinstance(limiter, LocalRateLimiter)
    assert limiter.per_sender == 1


def test_delivery_takes_the_token_of_the_sending_number(
    vonage: responses.RequestsMock, monkeypatch
) -> None:
    taken: list[tuple[str, str]] = []

    class Recording:
        def acquire(
            self, sender: str = "", *, defer_busy_sender: bool = False, ticket: str = ""
        ) -> float:
            taken.append((sender, ticket))
            return 0.0

        def throttled(self) -> None:
            raise AssertionError("not throttled")

        def current_rate(self) -> float:
            return 0.0

    monkeypatch.setattr(delivery, "rate_limiter_get", Recording)
    message = queued()
    answer_ok(vonage, message)

    message_deliver(message_id=message.pk)

    # The message's id is its ticket: the Redis limiter's reservation of a slot of that number.
    assert taken == [(message.sender, str(message.pk))]

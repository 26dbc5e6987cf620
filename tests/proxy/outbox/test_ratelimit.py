"""The shared send rate: in process for the embedded worker, in Redis for Celery workers."""

from __future__ import annotations

import time
import uuid

import pytest

from smsproxy.proxy.outbox.ratelimit import (
    RECOVERY_SECONDS,
    SHARED_BURST,
    SHARED_PACING,
    THROTTLE_FLOOR,
    LocalRateLimiter,
    RedisRateLimiter,
    UnlimitedRateLimiter,
    rate_limiter_get,
)
from tests.proxy.outbox.helpers import BROKER_URL, needs_broker

pytestmark = pytest.mark.django_db


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


@needs_broker
def test_the_redis_limiter_is_shared_between_processes() -> None:
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    worker_a = RedisRateLimiter(BROKER_URL, 20, key=key)  # one send every 50 ms
    worker_b = RedisRateLimiter(BROKER_URL, 20, key=key)

    started = time.monotonic()
    for limiter in (worker_a, worker_b, worker_a, worker_b, worker_a):
        limiter.acquire()

    assert time.monotonic() - started >= 0.19


@needs_broker
def test_celery_workers_use_the_redis_limiter(settings) -> None:
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.SMS_RATE_LIMIT = 25

    assert isinstance(rate_limiter_get(), RedisRateLimiter)


@needs_broker
def test_the_redis_limiter_slows_down_while_throttled_and_recovers() -> None:
    import redis

    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    worker_a = RedisRateLimiter(BROKER_URL, 20, key=key)
    worker_b = RedisRateLimiter(BROKER_URL, 20, key=key)
    assert worker_a.current_rate() == 20

    worker_a.throttled()

    assert worker_b.current_rate() == pytest.approx(10, abs=0.1)  # shared by every worker
    for _ in range(10):
        worker_b.throttled()
    assert worker_a.current_rate() == pytest.approx(THROTTLE_FLOOR, abs=0.1)

    # Time passes without throttles (the state's clock is Redis's: move the throttle back).
    client = redis.Redis.from_url(BROKER_URL)
    since = float(client.hget(key, "since") or 0)
    client.hset(key, "since", repr(since - RECOVERY_SECONDS / 2))
    assert THROTTLE_FLOOR < worker_a.current_rate() < 20
    client.hset(key, "since", repr(since - RECOVERY_SECONDS))
    assert worker_a.current_rate() == 20
    client.delete(key)


@needs_broker
def test_the_sends_in_flight_on_every_worker_halve_the_shared_rate_once() -> None:
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    worker_a = RedisRateLimiter(BROKER_URL, 1000, key=key)
    worker_b = RedisRateLimiter(BROKER_URL, 1000, key=key)
    worker_a.acquire()
    worker_b.acquire()

    worker_a.throttled()
    worker_b.throttled()  # its token was taken before the decrease

    assert worker_a.current_rate() == pytest.approx(500, abs=1)
    worker_b.acquire()
    worker_b.throttled()  # taken at the new rate: Vonage keeps throttling
    assert worker_a.current_rate() == pytest.approx(250, abs=1)


@needs_broker
def test_the_redis_limiter_caps_each_sending_number() -> None:
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    worker_a = RedisRateLimiter(BROKER_URL, 0, per_sender=1, key=key)
    worker_b = RedisRateLimiter(BROKER_URL, 0, per_sender=1, key=key)

    assert worker_a._take("+15555550100") == (0, 0, "")
    # The same number again, from another worker: about a second to wait, for that number.
    shared_wait, sender_wait, _state = worker_b._take("+15555550100")
    assert shared_wait == 0
    assert 0 < sender_wait <= 1
    # Another number is not held up.
    assert worker_b._take("+15555550101") == (0, 0, "")


@needs_broker
def test_the_redis_limiter_spaces_its_tokens_a_little_under_the_rate() -> None:
    # Many processes spend the shared tokens, each reaching Vonage a little late: at exactly
    # 1/rate apart, a 31st send fell into one second now and then and halved the rate.
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(BROKER_URL, 2, key=key)

    assert limiter._take("") == (0.0, 0.0, "")
    shared_wait, _sender_wait, _state = limiter._take("")

    assert shared_wait == pytest.approx(1 / (2 * SHARED_PACING), abs=0.005)
    assert shared_wait > 0.51  # 0.5 at the full rate
    assert limiter.current_rate() == 2  # the rate itself is SMS_RATE_LIMIT


@needs_broker
def test_a_token_taken_late_leaves_its_lateness_to_the_next_send() -> None:
    # A worker woken late for its token does not lose the time: the bucket kept up to
    # SHARED_BURST, so the next token is due sooner than a whole interval later.
    key = f"smsproxy:test:ratelimit:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(BROKER_URL, 2, key=key)
    interval = 1 / (2 * SHARED_PACING)

    assert limiter._take("")[0] == 0  # the bucket starts with one token
    time.sleep(interval * 1.6)  # taken 0.6 of an interval late
    assert limiter._take("")[0] == 0
    shared_wait = limiter._take("")[0]

    assert shared_wait < interval * 0.6  # a whole interval with a bucket of one token
    assert shared_wait == pytest.approx(interval * (2 - SHARED_BURST), abs=0.05)

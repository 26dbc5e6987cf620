"""The outbound rate limit: `SMS_RATE_LIMIT` messages per second shared by every worker, adapted
to Vonage's throttling, and `SMS_RATE_LIMIT_PER_SENDER` per sending number.

Vonage answers status 1 ("throttled", or HTTP 429) beyond the account's throughput, so delivery
takes a token before each send. The embedded worker is one process: an in-process token bucket
is enough. Celery workers are many processes on many hosts: they share one bucket in Redis (the
broker), updated atomically by a Lua script that reads the clock of the Redis server, so the
hosts' own clocks do not matter.

A bucket holds at most one token: sends are spaced evenly (1/rate apart) rather than burst, so
no one-second window ever sees more than about `rate` sends. A rate of 0 or less disables that
limit.

Adapting to throttling (DESIGN.md §6, AIMD): each throttled answer halves the shared rate
(`throttled()`), down to THROTTLE_FLOOR messages per second; from then on the rate climbs back
by 1/RECOVERY_SECONDS of `SMS_RATE_LIMIT` per second, so about RECOVERY_SECONDS after the last
throttle it is `SMS_RATE_LIMIT` again. Vonage's real throughput is unknown to us and changes
(other senders on the account, carriers), so the limiter probes: it slows down at once when
told to and speeds up steadily when not.

Per sending number: US long numbers are throttled by the carriers per number (about one SMS a
second) whatever the account's throughput. With `SMS_RATE_LIMIT_PER_SENDER` set, a send also
needs a token from its sender's own bucket; both are taken together or not at all. Delivery
asks with `defer_busy_sender`: when the sender's bucket, not the shared one, is what holds the
send back, `acquire` raises SenderBusy instead of sleeping, and the message is put back for
when that token is there. A worker sleeping a second for one number would leave every other
number's messages waiting behind it: measured with a pool of 40 numbers at 30/s, the embedded
worker then sent 6 a second (bench/throttling.py). The embedded worker also asks which numbers
are busy (`sender_waits`) and leaves their messages queued rather than claim them to put back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

REDIS_KEY = "smsproxy:ratelimit:sms"
# Longest single wait before asking the bucket again: keeps a waiting worker responsive when
# the rate is changed, without spinning.
_MAX_SLEEP = 1.0
# The adaptive rate never drops below this (messages per second), nor above SMS_RATE_LIMIT.
THROTTLE_FLOOR = 1.0
# Each throttle multiplies the current rate by this.
THROTTLE_DECREASE = 0.5
# Seconds the rate takes to climb from 0 back to SMS_RATE_LIMIT once throttling stops.
RECOVERY_SECONDS = 30.0
# How long Redis keeps the state of a quiet bucket: longer than a full recovery.
_STATE_TTL_MS = 3_600_000
# A bucket this close to a whole token has one: float rounding must not leave a waiter asking
# for a wait too short to move the clock.
_EPSILON = 1e-9


class SenderBusy(Exception):
    """The sending number's own bucket holds this send back `wait` seconds, longer than the
    shared bucket would: nothing was taken."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the sending number's own rate limit: {wait:.2f}s to wait")
        self.wait = wait


class RateLimiter(Protocol):
    def acquire(self, sender: str = "", *, defer_busy_sender: bool = False) -> float:
        """Block until a send from `sender` may go out; return the seconds waited.

        With `defer_busy_sender`, raise SenderBusy instead of waiting for the sender's own
        bucket longer than for the shared one.
        """
        ...

    def throttled(self) -> None:
        """Vonage throttled a send: slow the shared rate down."""
        ...

    def current_rate(self) -> float:
        """Messages per second the shared bucket allows now (0 = no limit)."""
        ...

    def sender_waits(self) -> dict[str, float]:
        """Numbers whose own bucket has no token now, as far as this process knows without
        asking anyone (their sends would be deferred), and the seconds until it has one."""
        ...

    def sender_wait(self, sender: str) -> float:
        """Seconds until `sender`'s own bucket has a token, as `sender_waits` tells (0: now)."""
        ...


class UnlimitedRateLimiter:
    def acquire(self, sender: str = "", *, defer_busy_sender: bool = False) -> float:
        return 0.0

    def throttled(self) -> None:
        return None

    def current_rate(self) -> float:
        return 0.0

    def sender_waits(self) -> dict[str, float]:
        return {}

    def sender_wait(self, sender: str) -> float:
        return 0.0


def _adapted(max_rate: float, rate: float | None, since: float, now: float) -> float:
    """The shared rate at `now`: `rate` set at `since` by a throttle, recovering linearly."""
    if rate is None:
        return max_rate
    return min(max_rate, rate + max(0.0, now - since) * max_rate / RECOVERY_SECONDS)


class LocalRateLimiter:
    """Thread-safe token buckets for one process: one shared, one per sending number.

    `clock` and `sleep` are the monotonic clock and the sleep it waits with (a fake pair in
    tests, so that minutes of throttling run in no time).
    """

    def __init__(
        self,
        rate: float,
        *,
        per_sender: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.per_sender = per_sender
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._tokens = 1.0
        self._updated = now
        # Set by a throttle: the rate then, and when; None while not adapted.
        self._throttled_rate: float | None = None
        self._throttled_at = now
        self._senders: dict[str, tuple[float, float]] = {}  # sender → (tokens, updated)

    def _current(self, now: float) -> float:
        return _adapted(self.rate, self._throttled_rate, self._throttled_at, now)

    def current_rate(self) -> float:
        with self._lock:
            return self._current(self._clock()) if self.rate > 0 else 0.0

    # A number has an entry only once it sent under a cap per number: without one, none waits.
    def sender_waits(self) -> dict[str, float]:
        with self._lock:
            now = self._clock()
            waits = {sender: self._sender_wait(sender, now) for sender in self._senders}
        return {sender: wait for sender, wait in waits.items() if wait > 0}

    def sender_wait(self, sender: str) -> float:
        with self._lock:
            return self._sender_wait(sender, self._clock())

    def _sender_wait(self, sender: str, now: float) -> float:
        tokens, updated = self._senders.get(sender, (1.0, now))
        tokens = min(1.0, tokens + (now - updated) * self.per_sender)
        return (1.0 - tokens) / self.per_sender if tokens < 1.0 - _EPSILON else 0.0

    def throttled(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            floor = min(THROTTLE_FLOOR, self.rate)
            self._throttled_rate = max(floor, self._current(now) * THROTTLE_DECREASE)
            self._throttled_at = now

    def _take(self, sender: str) -> tuple[float, float]:
        """Take the tokens if they are there; otherwise how long until each bucket has one
        (shared, sender's)."""
        with self._lock:
            now = self._clock()
            shared_wait = sender_wait = 0.0
            if self.rate > 0:
                rate = self._current(now)
                self._tokens = min(1.0, self._tokens + (now - self._updated) * rate)
                self._updated = now
                if self._tokens < 1.0 - _EPSILON:
                    shared_wait = (1.0 - self._tokens) / rate
            sender_tokens = 1.0
            if self.per_sender > 0 and sender:
                tokens, updated = self._senders.get(sender, (1.0, now))
                sender_tokens = min(1.0, tokens + (now - updated) * self.per_sender)
                self._senders[sender] = (sender_tokens, now)
                if sender_tokens < 1.0 - _EPSILON:
                    sender_wait = (1.0 - sender_tokens) / self.per_sender
            if shared_wait > 0 or sender_wait > 0:
                return shared_wait, sender_wait
            if self.rate > 0:
                self._tokens = max(0.0, self._tokens - 1.0)
            if self.per_sender > 0 and sender:
                self._senders[sender] = (max(0.0, sender_tokens - 1.0), now)
                self._forget_idle_senders(now)
            return 0.0, 0.0

    def _forget_idle_senders(self, now: float) -> None:
        # A sender whose bucket is full again needs no entry: keeps the dict small.
        if len(self._senders) > 1000:
            idle = 1.0 / self.per_sender
            self._senders = {
                sender: state for sender, state in self._senders.items() if now - state[1] < idle
            }

    def acquire(self, sender: str = "", *, defer_busy_sender: bool = False) -> float:
        return _wait_for_token(lambda: self._take(sender), self._sleep, defer_busy_sender)


# KEYS[1] the shared bucket, KEYS[2] the sender's bucket (or "" for none).
# ARGV[1] "take", "throttle" or "rate"; ARGV[2] SMS_RATE_LIMIT; ARGV[3] per-sender rate;
# ARGV[4] THROTTLE_FLOOR; ARGV[5] THROTTLE_DECREASE; ARGV[6] RECOVERY_SECONDS;
# ARGV[7] the state's time to live (ms).
# "take" returns {shared wait, sender's wait}: both "0" when the tokens were taken, else the
# seconds until each bucket has one; "throttle" and "rate" return the shared rate after the
# call. Strings: Redis would truncate a Lua number.
_TOKEN_BUCKET_LUA = """
local op = ARGV[1]
local max_rate = tonumber(ARGV[2])
local per_sender = tonumber(ARGV[3])
local epsilon = 1e-9
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'rate', 'since')
local rate = max_rate
local throttled_rate = tonumber(state[3])
local since = tonumber(state[4])
if throttled_rate ~= nil and since ~= nil then
  rate = math.min(max_rate,
    throttled_rate + math.max(0, now - since) * max_rate / tonumber(ARGV[6]))
end
if op == 'rate' then
  return tostring(rate)
end
if op == 'throttle' then
  local floor = math.min(tonumber(ARGV[4]), max_rate)
  rate = math.max(floor, rate * tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'since', tostring(now))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
  return tostring(rate)
end
local wait = 0
local sender_wait = 0
local tokens = 1
if max_rate > 0 then
  tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = 1
    updated = now
  end
  tokens = math.min(1, tokens + math.max(0, now - updated) * rate)
  if tokens < 1 - epsilon then
    wait = (1 - tokens) / rate
  end
end
local sender_tokens = 1
if per_sender > 0 and KEYS[2] ~= '' then
  local sender_state = redis.call('HMGET', KEYS[2], 'tokens', 'updated')
  sender_tokens = tonumber(sender_state[1])
  local sender_updated = tonumber(sender_state[2])
  if sender_tokens == nil or sender_updated == nil then
    sender_tokens = 1
    sender_updated = now
  end
  sender_tokens = math.min(1, sender_tokens + math.max(0, now - sender_updated) * per_sender)
  if sender_tokens < 1 - epsilon then
    sender_wait = (1 - sender_tokens) / per_sender
  end
end
if wait == 0 and sender_wait == 0 then
  tokens = math.max(0, tokens - 1)
  sender_tokens = math.max(0, sender_tokens - 1)
end
if max_rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
end
if per_sender > 0 and KEYS[2] ~= '' then
  redis.call('HSET', KEYS[2], 'tokens', tostring(sender_tokens), 'updated', tostring(now))
  redis.call('PEXPIRE', KEYS[2], math.ceil(1000 / per_sender) + 1000)
end
return {tostring(wait), tostring(sender_wait)}
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every process that uses the same Redis database."""

    def __init__(
        self, url: str, rate: float, *, per_sender: float = 0.0, key: str = REDIS_KEY
    ) -> None:
        import redis

        self.rate = rate
        self.per_sender = per_sender
        self.key = key
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(_TOKEN_BUCKET_LUA)

    def sender_key(self, sender: str) -> str:
        return f"{self.key}:sender:{sender}" if sender and self.per_sender > 0 else ""

    def _call(self, op: str, sender: str = "") -> Any:
        args = [
            op,
            repr(max(self.rate, 0.0)),
            repr(max(self.per_sender, 0.0)),
            repr(THROTTLE_FLOOR),
            repr(THROTTLE_DECREASE),
            repr(RECOVERY_SECONDS),
            str(_STATE_TTL_MS),
        ]
        return self._script(keys=[self.key, self.sender_key(sender)], args=args)

    def _take(self, sender: str) -> tuple[float, float]:
        shared_wait, sender_wait = self._call("take", sender)
        return float(shared_wait), float(sender_wait)

    def acquire(self, sender: str = "", *, defer_busy_sender: bool = False) -> float:
        return _wait_for_token(lambda: self._take(sender), time.sleep, defer_busy_sender)

    def throttled(self) -> None:
        if self.rate > 0:
            self._call("throttle")

    def current_rate(self) -> float:
        return float(self._call("rate")) if self.rate > 0 else 0.0

    # Unknown here (a SCAN per poll, or a round trip per message, would tell): a busy number's
    # message is deferred by `acquire` (SenderBusy) instead.
    def sender_waits(self) -> dict[str, float]:
        return {}

    def sender_wait(self, sender: str) -> float:
        return 0.0


def _wait_for_token(
    take: Callable[[], tuple[float, float]],
    sleep: Callable[[float], None],
    defer_busy_sender: bool,
) -> float:
    waited = 0.0
    while True:
        shared_wait, sender_wait = take()
        if shared_wait <= 0 and sender_wait <= 0:
            return waited
        if defer_busy_sender and sender_wait > shared_wait:
            raise SenderBusy(sender_wait)
        pause = min(max(shared_wait, sender_wait), _MAX_SLEEP)
        sleep(pause)
        waited += pause


_limiters: dict[tuple[str, float, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter_get() -> RateLimiter:
    """The limiter for the current settings (one per process and configuration)."""
    rate = float(settings.SMS_RATE_LIMIT)
    per_sender = float(settings.SMS_RATE_LIMIT_PER_SENDER)
    broker_url = settings.CELERY_BROKER_URL
    key = (broker_url, rate, per_sender)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiter_build(broker_url=broker_url, rate=rate, per_sender=per_sender)
            _limiters[key] = limiter
        return limiter


def _limiter_build(*, broker_url: str, rate: float, per_sender: float) -> RateLimiter:
    if not math.isfinite(rate) or not math.isfinite(per_sender):
        raise ImproperlyConfigured("SMS_RATE_LIMIT and SMS_RATE_LIMIT_PER_SENDER must be finite.")
    if rate <= 0 and per_sender <= 0:
        return UnlimitedRateLimiter()
    if not broker_url:
        return LocalRateLimiter(rate, per_sender=per_sender)
    if urlsplit(broker_url).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL must be a redis:// or rediss:// URL: the workers share their "
            "SMS rate limit through it."
        )
    return RedisRateLimiter(broker_url, rate, per_sender=per_sender)
